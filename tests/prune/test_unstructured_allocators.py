"""Allocators against values computed by hand: ERK densities, LAMP scores, thresholds."""

from __future__ import annotations

import math

import pytest
import torch

from dreamprune_cli.prune.unstructured.allocators import (allocate_erk, allocate_global,
                                                          allocate_lamp, allocate_uniform,
                                                          erk_densities, lamp_scores)
from dreamprune_cli.prune.unstructured.budget import MacBudget, PrunableLayer


def _budget(shapes: list[tuple[int, ...]], positions: list[int], fixed: int = 0) -> MacBudget:
    layers = tuple(PrunableLayer(f"l{i}", shape, math.prod(shape), math.prod(shape), pos)
                   for i, (shape, pos) in enumerate(zip(shapes, positions)))
    dense = fixed + sum(layer.numel * layer.positions for layer in layers)
    return MacBudget(layers=layers, fixed_macs=fixed, dense_macs=dense, input_size=(3, 8, 8))


def test_lamp_scores_by_hand() -> None:
    weight = torch.tensor([[-4.0, 1.0], [3.0, -2.0]])
    # |w| ascending 1, 2, 3, 4 -> squares 1, 4, 9, 16 -> tails 30, 29, 25, 16.
    expected = torch.tensor([[16 / 16, 1 / 30], [9 / 25, 4 / 29]], dtype=torch.float64)
    assert torch.allclose(lamp_scores(weight), expected)
    assert lamp_scores(torch.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_lamp_and_global_thresholds_by_hand() -> None:
    # Two one-position layers: a = [1, 2, 3, 4], b = [10, 20]; keep 3 of 6 weights.
    weights = [torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.tensor([[10.0], [20.0]])]
    budget = _budget([(1, 4), (2, 1)], [1, 1])
    # LAMP scores: a -> 1/30, 4/29, 9/25, 1; b -> 100/500 = 0.2, 1. Top 3: 1, 1, 9/25.
    lamp = allocate_lamp(weights, budget, 0.5)
    assert lamp.kept == [2, 1]
    assert 0.2 < lamp.scalar <= 9 / 25
    # Global magnitude: top 3 of |w| are 20, 10, 4.
    assert allocate_global(weights, budget, 0.5).kept == [1, 2]


def _erk_by_hand(shapes: list[tuple[int, ...]], positions: list[int], goal: float
                 ) -> list[float]:
    """Textbook ERK: scale raw densities, fix saturated layers dense, recompute the scale."""
    raw = [sum(s) / math.prod(s) for s in shapes]
    dense: set[int] = set()
    while True:
        fixed = sum(math.prod(shapes[i]) * positions[i] for i in dense)
        free = sum(raw[i] * math.prod(shapes[i]) * positions[i]
                   for i in range(len(shapes)) if i not in dense)
        scale = (goal - fixed) / free
        saturated = {i for i in range(len(shapes)) if i not in dense and scale * raw[i] > 1}
        if not saturated:
            return [1.0 if i in dense else scale * raw[i] for i in range(len(shapes))]
        dense |= saturated


def test_erk_densities_by_hand() -> None:
    # conv 3->8 3x3, conv 8->8 3x3, conv 8->3 1x1, all at 64 output pixels.
    shapes = [(8, 3, 3, 3), (8, 8, 3, 3), (3, 8, 1, 1)]
    positions = [64, 64, 64]
    budget = _budget(shapes, positions)
    weights = [torch.randn(s) for s in shapes]
    target = 0.5
    expected = _erk_by_hand(shapes, positions, target * budget.dense_macs)
    # By hand: raw 17/216, 22/576, 13/24; the 1x1 layer saturates; scale 384/39.
    assert expected[2] == 1.0
    assert expected[0] == pytest.approx(17 / 216 * 384 / 39)
    allocation = allocate_erk(weights, budget, target)
    densities = [k / math.prod(s) for k, s in zip(allocation.kept, shapes)]
    for got, want, shape in zip(densities, expected, shapes):
        assert got == pytest.approx(want, abs=1 / math.prod(shape))
    assert erk_densities(shapes, allocation.scalar) == pytest.approx(expected, rel=1e-2)
    assert budget.ratio(allocation.kept) == pytest.approx(target, rel=5e-3)


def test_uniform_keeps_the_same_fraction_everywhere() -> None:
    shapes = [(16, 8, 3, 3), (8, 16, 3, 3), (4, 8, 1, 1)]
    budget = _budget(shapes, [100, 100, 400], fixed=5000)
    weights = [torch.randn(s) for s in shapes]
    allocation = allocate_uniform(weights, budget, 0.4)
    fractions = [k / math.prod(s) for k, s in zip(allocation.kept, shapes)]
    assert max(fractions) - min(fractions) < 2 / min(math.prod(s) for s in shapes)
    assert budget.ratio(allocation.kept) == pytest.approx(0.4, rel=5e-3)


def test_counts_never_exceed_the_non_zero_weights() -> None:
    layer = PrunableLayer("a", (1, 10), 10, 6, 1)  # four weights are zero already
    budget = MacBudget(layers=(layer,), fixed_macs=0, dense_macs=10, input_size=(3, 8, 8))
    weight = torch.tensor([[0.0, 1, 0, 2, 0, 3, 0, 4, 5, 6]])
    for allocate in (allocate_uniform, allocate_global, allocate_erk, allocate_lamp):
        assert allocate([weight], budget, 0.6).kept == [6]
        assert allocate([weight], budget, 0.3).kept == [3]
