"""The dreaming, diversity and distillation losses against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from dreamprune_cli.engine.losses import (coarse_distance, degradation_representation,
                                          distill_loss, dream_loss, mean_pairwise_cosine,
                                          orth_loss, tv_loss)


def _features(*vectors: tuple[float, float]) -> torch.Tensor:
    """Three samples with C=2 channels and a 1x1 map."""
    return torch.tensor(vectors, dtype=torch.float32).view(len(vectors), 2, 1, 1)


def test_orth_gap_three_samples_by_hand() -> None:
    # r = (1,0), (0,1), (1,1); centred: (1,-2)/3, (-2,1)/3, (1,1)/3
    # cos12 = -4/5, cos13 = cos23 = -1/sqrt(10); mean of squares over 6 ordered pairs
    expected = (2 * (4 / 5) ** 2 + 4 * (1 / 10)) / 6
    assert float(orth_loss(_features((1, 0), (0, 1), (1, 1)), "gap")) == pytest.approx(expected)


def test_orth_gram_three_samples_by_hand() -> None:
    # Gram rows f f^T flattened: (1,0,0,0), (0,0,0,1), (1,1,1,1); centred norms^2 7/9, 7/9, 10/9
    # cos12 = -2/7, cos13 = cos23 = -5/sqrt(70)
    expected = (2 * (2 / 7) ** 2 + 4 * (25 / 70)) / 6
    value = float(orth_loss(_features((1, 0), (0, 1), (1, 1)), "gram"))
    assert value == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.2653061, rel=1e-6)


def test_gram_ignores_position() -> None:
    features = torch.rand(1, 4, 5, 6)
    shuffled = features.flatten(2)[..., torch.randperm(30)].view(1, 4, 5, 6)
    assert torch.allclose(degradation_representation(features),
                          degradation_representation(shuffled), atol=1e-6)


def test_orth_edge_cases_and_gradient() -> None:
    assert float(orth_loss(torch.rand(1, 3, 4, 4))) == 0.0
    features = torch.rand(4, 3, 4, 4, requires_grad=True)
    orth_loss(features).backward()
    assert torch.isfinite(features.grad).all()
    with pytest.raises(ValueError):
        orth_loss(torch.rand(3, 4), "gram")


def test_l1_losses_and_diversity_figure() -> None:
    a, b = torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.25)
    assert float(dream_loss(a, b)) == pytest.approx(0.25)
    assert float(distill_loss(a, b)) == pytest.approx(0.25)
    same = torch.ones(3, 5)
    assert mean_pairwise_cosine(same) == pytest.approx(1.0)
    orthogonal = torch.eye(3)
    assert mean_pairwise_cosine(orthogonal) == pytest.approx(0.0)
    assert math.isnan(mean_pairwise_cosine(torch.ones(1, 5)))


def test_tv_loss_by_hand() -> None:
    # rows (0, 1, 3) / (2, 2, 2): vertical |2-0|, |2-1|, |2-3| -> mean 4/3;
    # horizontal |1-0|, |3-1|, 0, 0 -> mean 3/4
    image = torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]).view(1, 1, 2, 3)
    assert float(tv_loss(image)) == pytest.approx(4 / 3 + 3 / 4)
    assert float(tv_loss(torch.full((2, 3, 5, 5), 0.7))) == 0.0


def test_coarse_distance_by_hand() -> None:
    # x - y on a 4x4 map: blocks of 2x2 with means 1, -1, 0.5 and 0 -> mean |.| = 2.5 / 4
    diff = torch.tensor([[1.0, 1.0, -1.0, -1.0],
                         [1.0, 1.0, -1.0, -1.0],
                         [1.0, 0.0, 2.0, -2.0],
                         [0.0, 1.0, 0.0, 0.0]]).view(1, 1, 4, 4)
    clean = torch.rand(1, 1, 4, 4)
    assert float(coarse_distance(clean + diff, clean, 2)) == pytest.approx(2.5 / 4)
    # fine noise that averages out per block is not "far"; a pool above the size is capped
    checker = torch.tensor([[1.0, -1.0], [-1.0, 1.0]]).repeat(2, 2).view(1, 1, 4, 4)
    assert float(coarse_distance(clean + checker, clean, 2)) == pytest.approx(0.0, abs=1e-6)
    assert float(coarse_distance(clean + 0.5, clean, 64)) == pytest.approx(0.5)
