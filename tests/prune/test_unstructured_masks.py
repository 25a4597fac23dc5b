"""Masks: attached with parametrize, fixed under training, exported as plain zeros."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.prune.unstructured.masks import (attach_masks, default_exclude, get_masks,
                                                     magnitude_mask, matches, plain_state_dict,
                                                     set_masks, split_layers)


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                         nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                                       nn.ConvTranspose2d(8, 4, 2, stride=2)),
                         nn.Conv2d(4, 3, 1))


def _half_masks(net: nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    modules = dict(net.named_modules())
    return {n: magnitude_mask(modules[n].parametrizations["weight"].original,
                              modules[n].weight.numel() // 2) for n in names}


def test_magnitude_mask_keeps_the_largest() -> None:
    weight = torch.tensor([[0.5, -3.0], [2.0, -0.1]])
    assert magnitude_mask(weight, 2).tolist() == [[False, True], [True, False]]
    assert not magnitude_mask(weight, 0).any() and magnitude_mask(weight, 9).all()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_pruned_weights_stay_zero_when_training(optimizer: str) -> None:
    net = _net()
    names = ["0", "2.0", "2.2", "3"]
    attach_masks(net, names)
    masks = _half_masks(net, names)
    set_masks(net, masks)
    originals = {n: dict(net.named_modules())[n].parametrizations["weight"].original.detach()
                 .clone() for n in names}
    opt = (torch.optim.SGD(net.parameters(), lr=1.0, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(net.parameters(), lr=0.1))
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(2, 3, 8, 8)).square().mean().backward()
        opt.step()
    modules = dict(net.named_modules())
    for name in names:
        weight = modules[name].weight.detach()
        assert torch.all(weight[~masks[name]] == 0)
        assert torch.any(weight[masks[name]] != originals[name][masks[name]])  # it trained
        original = modules[name].parametrizations["weight"].original.detach()
        assert torch.equal(original[~masks[name]], originals[name][~masks[name]])  # no grad
    assert all(torch.equal(get_masks(net)[n], masks[n]) for n in names)
    assert not any("mask" in n for n, _ in net.named_parameters())


def test_plain_state_dict_loads_strict_into_the_unpruned_net() -> None:
    net = _net()
    names = ["0", "2.2"]
    attach_masks(net, names)
    masks = _half_masks(net, names)
    set_masks(net, masks)
    state = plain_state_dict(net)
    fresh = _net()
    assert set(state) == set(fresh.state_dict())
    fresh.load_state_dict(state, strict=True)
    assert int((state["0.weight"] == 0).sum()) == masks["0"].numel() // 2
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(fresh(x), net(x))


def test_matches_names_and_prefixes() -> None:
    assert matches("g1.gp.0.conv1", ["g1"])
    assert matches("g1.gp.0.conv1", ["g*.gp.*.conv1"])
    assert not matches("pre.01", ["pre.0"])
    assert matches("pre.0", ["pre.0"])


def test_split_layers_defaults_user_globs_and_bad_glob() -> None:
    net = _net()
    pruned, dense = split_layers(net, ["0"], ["2.2"])
    assert pruned == ["2.0", "3"] and dense == ["0", "2.2"]
    pruned, dense = split_layers(net, [], ["2"])
    assert pruned == ["0", "3"]
    with pytest.raises(UsageError, match="exclude 'nope'"):
        split_layers(net, [], ["nope"])


def test_default_exclude_without_registry_entry_is_first_and_last_called() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tail = nn.Conv2d(4, 3, 1)  # declared first, called last
            self.head = nn.Conv2d(3, 4, 3, padding=1)
            self.body = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.tail(self.body(self.head(x)))

    assert default_exclude(Net(), (), (3, 8, 8)) == ["head", "tail"]
    assert default_exclude(Net(), ("body",), (3, 8, 8)) == ["body"]
