"""Adaptive allocation: drift measured in one batched pass equals pruning layer by layer."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dreamprune_cli.prune.unstructured.budget import MacBudget, PrunableLayer, measure_budget
from dreamprune_cli.prune.unstructured.drift import DriftCurves, allocate_adaptive, measure_drift
from dreamprune_cli.prune.unstructured.masks import attach_masks, get_masks, magnitude_mask


def _net() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                         nn.ConvTranspose2d(6, 6, 2, stride=2), nn.ReLU(),
                         nn.Conv2d(6, 3, 3, stride=2, padding=1))


@pytest.mark.parametrize("max_batch", [64, 4])
def test_batched_drift_equals_pruning_each_layer(max_batch: int) -> None:
    net = _net().eval()
    names = ["0", "2", "4"]
    reference_net = copy.deepcopy(net)
    attach_masks(net, names)
    budget = measure_budget(net, names, (3, 8, 8))
    images = torch.rand(2, 3, 8, 8)
    levels = (1.0, 0.5, 0.2, 0.0)
    modules = dict(net.named_modules())
    curves = measure_drift(net, {n: modules[n] for n in names}, budget, images, levels,
                           max_batch=max_batch)
    with torch.no_grad():
        expected_out = reference_net(images)
        for i, name in enumerate(names):
            for g, level in enumerate(levels):
                pruned = copy.deepcopy(reference_net)
                layer = dict(pruned.named_modules())[name]
                keep = round(level * layer.weight.numel())
                layer.weight.mul_(magnitude_mask(layer.weight, keep))
                want = (pruned(images) - expected_out).pow(2).mean().item()
                assert curves.drift[i][g] == pytest.approx(want, rel=1e-5, abs=1e-12)
                assert curves.kept[i][g] == keep
    assert all(m.all() for m in get_masks(net).values())  # masks restored


def _two_layer_problem() -> tuple[DriftCurves, MacBudget]:
    layers = (PrunableLayer("robust", (100,), 100, 100, 10),
              PrunableLayer("fragile", (100,), 100, 100, 10))
    budget = MacBudget(layers=layers, fixed_macs=0, dense_macs=2000, input_size=(3, 8, 8))
    curves = DriftCurves(names=["robust", "fragile"], keep_levels=(1.0, 0.75, 0.5, 0.25, 0.0),
                         kept=[[100, 75, 50, 25, 0]] * 2,
                         drift=[[0.0, 0.01, 0.02, 0.03, 0.5], [0.0, 1.0, 2.0, 3.0, 4.0]])
    return curves, budget


def test_lagrangian_keeps_min_keep_of_every_layer_when_the_target_allows() -> None:
    curves, budget = _two_layer_problem()
    # 120 weights to keep; the robust layer may not go below its 0.25 level (25 weights),
    # so the fragile one gives up 5 weights, between its 1.0 and 0.75 levels.
    assert allocate_adaptive(curves, budget, 0.6, min_keep=0.1).kept == [25, 95]
    # 20 weights cannot be kept with 25 in each layer: levels below min_keep are allowed.
    tight = allocate_adaptive(curves, budget, 0.1, min_keep=0.1)
    assert sum(tight.kept) == 20


def test_lagrangian_prunes_the_insensitive_layer_and_hits_the_target() -> None:
    layers = (PrunableLayer("robust", (100,), 100, 100, 10),
              PrunableLayer("fragile", (100,), 100, 100, 10))
    budget = MacBudget(layers=layers, fixed_macs=0, dense_macs=2000, input_size=(3, 8, 8))
    levels = (1.0, 0.75, 0.5, 0.25, 0.0)
    kept = [[100, 75, 50, 25, 0]] * 2
    curves = DriftCurves(names=["robust", "fragile"], keep_levels=levels, kept=kept,
                         drift=[[0.0, 0.01, 0.02, 0.03, 0.5], [0.0, 1.0, 2.0, 3.0, 4.0]])
    # Keep 0.6 of 2000 MACs = 1200 = 120 weights: the fragile layer stays dense and the
    # robust one keeps 20 weights, between its 0.25 and 0.0 levels.
    allocation = allocate_adaptive(curves, budget, 0.6, min_keep=0.0)
    assert allocation.kept == [20, 100]
    assert allocation.details["interpolated_layers"] == ["robust"]
    # Keep 0.3 = 60 weights: removing the robust layer's last 25 weights costs 0.47 of drift,
    # less than the 1.0 per 25 weights of the fragile one, so the fragile one keeps all 60.
    assert allocate_adaptive(curves, budget, 0.3, min_keep=0.0).kept == [0, 60]
