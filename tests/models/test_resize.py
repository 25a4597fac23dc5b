"""``dreamprune_cli.models.resize``: resizing layers to a state dict, unsharing modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.resize import resize_to_state_dict, unshare_modules


def test_resize_refuses_shapes_that_are_not_channel_pruned() -> None:
    network = nn.Sequential(nn.Conv2d(3, 8, 3))
    with pytest.raises(UsageError, match="0.weight"):
        resize_to_state_dict(network, {"0.weight": torch.zeros(8, 3, 3)})
    resized = resize_to_state_dict(network, {"0.weight": torch.zeros(5, 3, 3, 3),
                                             "0.bias": torch.zeros(5)})
    assert resized == ["0"] and network[0].out_channels == 5


def test_unshare_gives_each_place_a_copy() -> None:
    act = nn.PReLU()
    network = nn.Sequential(nn.Sequential(act), nn.Sequential(act))
    assert unshare_modules(network) == ["1.0"]
    assert network[0][0] is not network[1][0]
    assert list(network.state_dict()) == ["0.0.weight", "1.0.weight"]


def test_resize_follows_a_thinner_conv_and_its_norm() -> None:
    network = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8),
                            nn.Conv2d(8, 3, 1))
    state = {"0.weight": torch.zeros(5, 3, 3, 3), "0.bias": torch.zeros(5),
             "1.weight": torch.ones(5), "1.bias": torch.zeros(5),
             "1.running_mean": torch.zeros(5), "1.running_var": torch.ones(5),
             "2.weight": torch.zeros(3, 5, 1, 1), "2.bias": torch.zeros(3)}
    assert resize_to_state_dict(network, state) == ["0", "1", "2"]
    network.load_state_dict(state)
    assert (network[0].out_channels, network[1].num_features, network[2].in_channels) == \
        (5, 5, 5)
    assert network(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)
