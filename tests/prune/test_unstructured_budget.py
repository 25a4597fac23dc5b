"""MAC budget: positions and fixed cost by hand, reachable targets."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.flops import count_costs
from dreamprune_cli.prune.unstructured.budget import measure_budget
from dreamprune_cli.prune.unstructured.masks import attach_masks, magnitude_mask, set_masks


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                         nn.ConvTranspose2d(4, 2, 2, stride=2), nn.Conv2d(2, 3, 1, bias=False))


def test_positions_and_fixed_macs_by_hand() -> None:
    net = _net()
    attach_masks(net, ["0", "2"])
    budget = measure_budget(net, ["0", "2"], (3, 8, 8))
    # conv: 64 output pixels; transposed conv: 64 input pixels.
    assert [layer.positions for layer in budget.layers] == [64, 64]
    assert [layer.numel for layer in budget.layers] == [108, 32]
    # biases 4*64 + 2*256, ReLU 4*64, the unpruned 1x1 conv 6 weights * 256 pixels.
    assert budget.fixed_macs == 4 * 64 + 2 * 256 + 4 * 64 + 6 * 256
    assert budget.dense_macs == budget.fixed_macs + 108 * 64 + 32 * 64
    # Any masks: the counter agrees with the budget exactly.
    modules = dict(net.named_modules())
    set_masks(net, {"0": magnitude_mask(modules["0"].parametrizations["weight"].original, 50),
                    "2": magnitude_mask(modules["2"].parametrizations["weight"].original, 7)})
    assert count_costs(net, (3, 8, 8)).macs == budget.kept_macs([50, 7])


def test_unreachable_and_invalid_targets() -> None:
    net = _net()
    attach_masks(net, ["0"])
    budget = measure_budget(net, ["0"], (3, 8, 8))
    smallest = budget.smallest_ratio
    assert smallest == pytest.approx(0.4)  # the conv's 108 x 64 MACs are 60% of 11520
    reachable = f"{math.ceil(smallest * 1e4) / 1e4:.4f}"
    with pytest.raises(UsageError, match=f"smallest reachable F is {reachable}"):
        budget.check_target(smallest * 0.9, "net")
    budget.check_target(smallest * 1.01, "net")
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(UsageError, match=r"expected a fraction .* in \(0, 1\]"):
            budget.check_target(bad, "net")


def test_sparse_model_cannot_grow() -> None:
    net = _net()
    with torch.no_grad():
        net[0].weight[:2] = 0  # half of the first conv is zero already
    attach_masks(net, ["0"])
    budget = measure_budget(net, ["0"], (3, 8, 8))
    assert budget.layers[0].nonzero == 54
    with pytest.raises(UsageError, match="largest reachable"):
        budget.check_target(1.0, "net")
