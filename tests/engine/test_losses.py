"""The dreaming, diversity and distillation losses against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from dreamprune_cli.engine.losses import (degradation_representation, distill_loss,
                                          dream_loss, mean_pairwise_cosine, orth_loss)


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
