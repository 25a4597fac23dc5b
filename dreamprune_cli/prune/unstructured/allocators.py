"""Layer-wise allocation: how many weights each pruned layer keeps, for a MAC target.

Every allocator maps one scalar to per-layer kept counts and finds the scalar by bisection
so that the kept MACs (:class:`~dreamprune_cli.prune.unstructured.budget.MacBudget`) meet the target:

* ``uniform`` (Han et al. 2015, the paper's "l1"): the same density ``d`` in every layer;
  scalar ``d``.
* ``global``: one magnitude threshold ``t`` over all layers, keep ``|w| >= t``; scalar ``t``.
* ``erk`` (Evci et al. 2020): density ``min(1, eps * sum(shape) / prod(shape))`` -- for a
  convolution ``(n_in + n_out + k_h + k_w) / (n_in n_out k_h k_w)``; scalar ``eps``. Clipping
  at 1 is the "fix saturated layers dense and recompute the factor" step of the paper: the
  bisection finds the factor for the layers left.
* ``lamp`` (Lee et al. 2021): LAMP scores (:func:`lamp_scores`), one threshold on them;
  scalar: the threshold.

The weights kept in a layer are always its largest ``|w|`` (LAMP scores are monotone in
``|w|`` within a layer, so its threshold keeps exactly those too); the masks themselves are
made by :func:`dreamprune_cli.prune.unstructured.masks.magnitude_masks`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from dreamprune_cli.prune.unstructured.budget import MacBudget

KeptAt = Callable[[float], list[int]]


@dataclass
class Allocation:
    """Kept weights per pruned layer (budget order) and the scalar that produced them."""

    kept: list[int]
    scalar_name: str
    scalar: float
    details: dict[str, object] = field(default_factory=dict)


def bisect_scalar(kept_at: KeptAt, budget: MacBudget, target: float, low: float, high: float,
                  increasing: bool, iterations: int = 200) -> tuple[float, list[int]]:
    """Bisect ``x`` in ``[low, high]`` so that ``budget.kept_macs(kept_at(x))`` meets the target.

    Args:
        kept_at: scalar -> kept counts per layer; monotone in the scalar.
        budget: MAC accounting.
        target: fraction of the dense MACs to keep.
        low, high: a bracket: one end keeps at most the target, the other at least.
        increasing: whether MACs grow with the scalar (density, scale) or shrink
            (thresholds, multipliers).
        iterations: upper bound; stops early on an exact hit or when the bracket is one float.

    Returns:
        The scalar and its counts whose MACs are closest to the target among those tried.
    """
    goal = budget.target_macs(target)
    best: tuple[float, float, list[int]] | None = None
    for x in (low, high):
        kept = kept_at(x)
        gap = abs(budget.kept_macs(kept) - goal)
        if best is None or gap < best[0]:
            best = (gap, x, kept)
    for _ in range(iterations):
        mid = 0.5 * (low + high)
        if mid in (low, high):
            break
        kept = kept_at(mid)
        macs = budget.kept_macs(kept)
        gap = abs(macs - goal)
        if gap < best[0]:  # type: ignore[index]
            best = (gap, mid, kept)
        if macs == goal:
            break
        if (macs > goal) == increasing:
            high = mid
        else:
            low = mid
    assert best is not None
    return best[1], best[2]


def _counts_above(sorted_scores: Sequence[torch.Tensor], threshold: float) -> list[int]:
    """Per layer: how many of its ascending-sorted scores are >= ``threshold``."""
    t = torch.tensor([threshold], dtype=torch.float64)
    return [scores.numel() - int(torch.searchsorted(scores, t, side="left"))
            for scores in sorted_scores]


def allocate_uniform(weights: Sequence[torch.Tensor], budget: MacBudget,
                     target: float) -> Allocation:
    """The same density in every pruned layer; bisection on the density."""
    numels = [layer.numel for layer in budget.layers]

    def kept_at(density: float) -> list[int]:
        return budget.clip([density * n for n in numels])

    density, kept = bisect_scalar(kept_at, budget, target, 0.0, 1.0, increasing=True)
    return Allocation(kept, "density", density)


def allocate_global(weights: Sequence[torch.Tensor], budget: MacBudget,
                    target: float) -> Allocation:
    """One magnitude threshold over every pruned layer; bisection on the threshold."""
    magnitudes = [w.detach().abs().flatten().double().sort().values.cpu() for w in weights]
    top = max((float(m[-1]) for m in magnitudes if m.numel()), default=0.0)

    def kept_at(threshold: float) -> list[int]:
        return budget.clip(_counts_above(magnitudes, threshold))

    threshold, kept = bisect_scalar(kept_at, budget, target, 0.0, 2.0 * top + 1e-30,
                                    increasing=False)
    return Allocation(kept, "threshold", threshold)


def erk_factors(shapes: Sequence[Sequence[int]]) -> list[float]:
    """ERK's raw density per layer: ``sum(shape) / prod(shape)`` of the weight."""
    return [sum(shape) / math.prod(shape) for shape in shapes]


def erk_densities(shapes: Sequence[Sequence[int]], scale: float) -> list[float]:
    """ERK densities at factor ``scale``: ``min(1, scale * factor)`` per layer."""
    return [min(1.0, scale * factor) for factor in erk_factors(shapes)]


def allocate_erk(weights: Sequence[torch.Tensor], budget: MacBudget,
                 target: float) -> Allocation:
    """Densities proportional to ERK's factor, saturated layers dense; bisection on the scale."""
    shapes = [layer.shape for layer in budget.layers]
    numels = [layer.numel for layer in budget.layers]
    factors = erk_factors(shapes)

    def kept_at(scale: float) -> list[int]:
        return budget.clip([d * n for d, n in zip(erk_densities(shapes, scale), numels)])

    high = max((1.0 / f for f in factors), default=1.0)
    scale, kept = bisect_scalar(kept_at, budget, target, 0.0, high, increasing=True)
    return Allocation(kept, "scale", scale)


def lamp_scores(weight: torch.Tensor) -> torch.Tensor:
    """LAMP score of every weight (same shape), in float64.

    With a layer's weights sorted by ``|w|`` ascending, the score of weight ``u`` is
    ``w_u^2 / sum_{v >= u} w_v^2``: its square over the squares of itself and every larger
    weight. The largest weight scores 1; zero weights score 0.
    """
    flat = weight.detach().flatten().double().cpu()
    squares, order = torch.sort(flat * flat, stable=True)
    tail = torch.flip(torch.cumsum(torch.flip(squares, [0]), 0), [0])
    sorted_scores = torch.where(tail > 0, squares / tail.clamp_min(1e-300),
                                torch.zeros_like(squares))
    scores = torch.empty_like(sorted_scores)
    scores[order] = sorted_scores
    return scores.view(weight.shape)


def allocate_lamp(weights: Sequence[torch.Tensor], budget: MacBudget,
                  target: float) -> Allocation:
    """One threshold on LAMP scores over every pruned layer; bisection on the threshold."""
    scores = [lamp_scores(w).flatten().sort().values for w in weights]

    def kept_at(threshold: float) -> list[int]:
        return budget.clip(_counts_above(scores, threshold))

    threshold, kept = bisect_scalar(kept_at, budget, target, 0.0, 2.0, increasing=False)
    return Allocation(kept, "threshold", threshold)


MAGNITUDE_ALLOCATORS: dict[str, Callable[[Sequence[torch.Tensor], MacBudget, float],
                                         Allocation]] = {
    "uniform": allocate_uniform,
    "global": allocate_global,
    "erk": allocate_erk,
    "lamp": allocate_lamp,
}
"""The magnitude allocators by name: every name of :data:`dreamprune_cli.prune.ALLOCATORS`
but ``adaptive``, which allocates from drift curves (:mod:`~dreamprune_cli.prune.unstructured.drift`)."""
