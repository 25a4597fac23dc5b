"""The adaptive allocator: per-layer drift curves and the Lagrangian choice of sparsities.

Drift (our definition of the paper's "regression drift"): the mean squared difference
between the output of the network with only layer ``l`` pruned to keep-level ``k`` (its
largest-``|w|`` weights) and the teacher's output, over the calibration images. Squared
errors of small independent perturbations add up, so the network's drift is modelled as the
sum of the per-layer drifts, and the allocation is the separable problem::

    minimise  sum_l d_l(k_l)   subject to   kept MACs = F * dense MACs

solved through its Lagrangian: for a multiplier ``mu`` each layer picks
``argmin_k d_l(k) + mu * macs_l(k)``; bisection on ``mu`` meets the target; between the two
grid choices that bracket it, the layers that differ move linearly between their two levels
(a second bisection), which reaches the target within one weight's MACs.

Vectorised measurement: for layer ``l`` the calibration batch ``(B, 3, H, W)`` is repeated
once per keep-level, and a forward hook on ``l`` recomputes its output chunk by chunk with each
level's masked weight, so one forward pass of ``G * B`` images measures ``G`` levels.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from dreamprune_cli.errors import RuntimeFailure
from dreamprune_cli.progress import NullProgress, ProgressSink
from dreamprune_cli.prune.unstructured.allocators import Allocation, bisect_scalar
from dreamprune_cli.prune.unstructured.budget import MacBudget
from dreamprune_cli.prune.spec import DEFAULT_MIN_KEEP
from dreamprune_cli.prune.unstructured.masks import mask_holder, unmasked_weight

log = logging.getLogger(__name__)

DEFAULT_KEEP_LEVELS: tuple[float, ...] = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0)
"""Fractions of each layer's weights kept at which drift is measured (1.0 costs nothing)."""


@dataclass
class DriftCurves:
    """Drift of every pruned layer at every keep-level.

    Attributes:
        names: layer names, in the budget's order.
        keep_levels: the grid, starting at 1.0.
        kept: ``kept[l][g]``: weights layer ``l`` keeps at level ``g``.
        drift: ``drift[l][g]``: mean squared output difference to the teacher.
        seconds: wall-clock time of the measurement.
        images: calibration images used.
        image_size: their ``(height, width)``.
    """

    names: list[str]
    keep_levels: tuple[float, ...]
    kept: list[list[int]]
    drift: list[list[float]]
    seconds: float = 0.0
    images: int = 0
    image_size: tuple[int, int] = (0, 0)

    def as_dict(self) -> dict[str, object]:
        return {"keep_levels": list(self.keep_levels), "seconds": self.seconds,
                "images": self.images, "image_size": list(self.image_size),
                "layers": {name: drift for name, drift in zip(self.names, self.drift)}}


def level_counts(budget: MacBudget, keep_levels: Sequence[float]) -> list[list[int]]:
    """Weights kept per layer at each level (rounded, at most the layer's non-zeros)."""
    return [[max(0, min(layer.nonzero, int(round(level * layer.numel)))) for level in keep_levels]
            for layer in budget.layers]


def _level_hook(masks: list[torch.Tensor]):  # type: ignore[no-untyped-def]
    """Forward hook recomputing chunk ``i`` of the layer's batch with mask ``masks[i]``.

    The layer's own :class:`~dreamprune_cli.prune.unstructured.masks.WeightMask` is set to each level's
    mask in turn and restored afterwards.
    """
    busy = [False]

    def hook(module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> object:
        if busy[0]:  # the hook's own recomputation below
            return None
        x = args[0]
        if x.shape[0] % len(masks):
            raise RuntimeFailure(f"drift measurement: a layer saw a batch of {x.shape[0]}, "
                                 f"not a multiple of the {len(masks)} levels measured at once")
        chunk = x.shape[0] // len(masks)
        holder = mask_holder(module)
        assert holder is not None
        saved = holder.mask.clone()
        busy[0] = True
        try:
            pieces = []
            for i, mask in enumerate(masks):
                holder.mask.copy_(mask)
                pieces.append(module(x[i * chunk:(i + 1) * chunk], *args[1:], **kwargs))
        finally:
            holder.mask.copy_(saved)
            busy[0] = False
        return torch.cat(pieces, 0)

    return hook


def measure_drift(model: nn.Module, layers: Mapping[str, nn.Module], budget: MacBudget,
                  calibration: torch.Tensor, keep_levels: Sequence[float] = DEFAULT_KEEP_LEVELS,
                  max_batch: int = 64, progress: ProgressSink | None = None) -> DriftCurves:
    """Measure the drift curve of every layer of ``budget``.

    Args:
        model: the teacher as called on images (an adapter: RGB in, RGB out), on its device.
        layers: name -> module of ``model`` for every layer in ``budget``, each carrying an
            all-ones :class:`~dreamprune_cli.prune.unstructured.masks.WeightMask` (``attach_masks``).
        budget: the pruned layers and their non-zero counts.
        calibration: ``(B, 3, H, W)`` images in [0, 1] on which drift is measured.
        keep_levels: the grid; must start at 1.0 and decrease.
        max_batch: images per forward pass (levels are split into passes to respect it).
        progress: one step per layer.
    """
    if not keep_levels or keep_levels[0] != 1.0 or list(keep_levels) != sorted(keep_levels,
                                                                                reverse=True):
        raise ValueError(f"keep levels must start at 1.0 and decrease, got {keep_levels}")
    progress = progress or NullProgress()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    images = calibration.to(device)
    batch = images.shape[0]
    per_pass = max(1, max_batch // batch)
    counts = level_counts(budget, keep_levels)
    drift: list[list[float]] = []
    start = time.perf_counter()
    progress.start("drift", len(budget.layers), "layers")
    with torch.inference_mode():
        reference = model(images).float()
        for index, (layer, layer_counts) in enumerate(zip(budget.layers, counts), start=1):
            module = layers[layer.name]
            magnitudes = unmasked_weight(module).detach().abs().flatten()
            order = magnitudes.sort(descending=True, stable=True).indices  # as magnitude_mask
            unique = sorted({k for k in layer_counts if k < layer.nonzero}, reverse=True)
            measured: dict[int, float] = {}
            for first in range(0, len(unique), per_pass):
                group = unique[first:first + per_pass]
                masks = []
                for k in group:
                    mask = torch.zeros(order.numel(), dtype=torch.bool, device=device)
                    mask[order[:k]] = True
                    masks.append(mask.view(layer.shape))
                handle = module.register_forward_hook(_level_hook(masks), with_kwargs=True)
                try:
                    out = model(images.repeat(len(group), 1, 1, 1)).float()
                finally:
                    handle.remove()
                errors = (out.view(len(group), *reference.shape) - reference).pow(2)
                for k, value in zip(group, errors.flatten(1).mean(1).tolist()):
                    measured[k] = value
            row = [measured.get(k, 0.0) for k in layer_counts]
            if not all(math.isfinite(v) for v in row):
                raise RuntimeFailure(f"drift of layer {layer.name} is not finite: the network "
                                     "produced NaN/inf on the calibration images")
            drift.append(row)
            progress.update(index, layer=layer.name)
    progress.finish()
    seconds = time.perf_counter() - start
    log.info("drift of %d layers x %d levels on %d images in %.1f s", len(budget.layers),
             len(keep_levels) - 1, batch, seconds)
    return DriftCurves(names=[layer.name for layer in budget.layers],
                       keep_levels=tuple(keep_levels), kept=counts, drift=drift,
                       seconds=seconds, images=batch,
                       image_size=(int(images.shape[-2]), int(images.shape[-1])))


@dataclass
class _Lagrangian:
    """Vectorised ``argmin_g drift[l, g] + mu * macs[l, g]`` per layer."""

    drift: np.ndarray
    macs: np.ndarray
    kept: np.ndarray
    rows: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.rows = np.arange(self.kept.shape[0])

    def kept_at(self, log_mu: float) -> list[int]:
        choice = np.argmin(self.drift + (10.0 ** log_mu) * self.macs, axis=1)
        return [int(k) for k in self.kept[self.rows, choice]]


def allocate_adaptive(curves: DriftCurves, budget: MacBudget, target: float,
                      min_keep: float = DEFAULT_MIN_KEEP) -> Allocation:
    """Layer keep counts minimising the summed drift at the MAC target.

    Bisection on ``log10 mu`` (drift normalised by its largest value, MACs by the dense
    MACs), then a second bisection moving the layers that differ between the two bracketing
    choices linearly from one to the other. Levels below ``min_keep`` are used only when
    the target cannot be reached without them.
    """
    if curves.names != [layer.name for layer in budget.layers]:
        raise ValueError("drift curves and budget list different layers")
    if not budget.layers:
        return Allocation([], "mu", 0.0)
    kept = np.asarray(curves.kept, dtype=np.int64)
    positions = np.asarray([layer.positions for layer in budget.layers], dtype=np.float64)
    drift = np.asarray(curves.drift, dtype=np.float64)
    drift = drift / max(float(drift.max()), 1e-300)
    # Break ties (layers whose pruning changes nothing measurable) toward keeping weights.
    drift = drift + 1e-9 * (1.0 - np.asarray(curves.keep_levels))[None, :]
    macs = kept * positions[:, None] / budget.dense_macs
    goal = budget.target_macs(target)
    allowed = np.asarray(curves.keep_levels) >= min_keep - 1e-12
    if not allowed.all():
        floor = kept[:, int(np.flatnonzero(allowed)[-1])]  # level 1.0 is always allowed
        if budget.kept_macs([int(k) for k in floor]) > goal:
            log.info("keeping %.2f of every layer cannot reach F = %.3f: allowing less",
                     min_keep, target)
        else:
            drift[:, ~allowed] = np.inf
    problem = _Lagrangian(drift, macs, kept)

    more, less = -12.0, 12.0  # log10 mu: MACs >= goal at `more`, <= goal at `less`
    while budget.kept_macs(problem.kept_at(less)) > goal and less < 300:
        less += 12.0
    for _ in range(200):
        mid = 0.5 * (more + less)
        if mid in (more, less):
            break
        macs_mid = budget.kept_macs(problem.kept_at(mid))
        if macs_mid == goal:
            more = less = mid
            break
        if macs_mid > goal:
            more = mid
        else:
            less = mid
    kept_more = np.asarray(problem.kept_at(more), dtype=np.float64)
    kept_less = np.asarray(problem.kept_at(less), dtype=np.float64)

    def interpolated(fraction: float) -> list[int]:
        return budget.clip(list(kept_more + fraction * (kept_less - kept_more)))

    fraction, final = bisect_scalar(interpolated, budget, target, 0.0, 1.0, increasing=False)
    moved = [layer.name for layer, a, b in zip(budget.layers, kept_more, kept_less) if a != b]
    return Allocation(final, "mu", 10.0 ** (0.5 * (more + less)),
                      {"interpolated_layers": moved, "interpolation": fraction})
