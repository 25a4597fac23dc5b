"""The adaptive allocator at channel granularity: per-group drift curves on calibration images.

The unstructured adaptive allocator (:mod:`dreamprune_cli.prune.unstructured.drift`) measures how far the
network's output moves when one layer loses weights. Its channel form measures the same
quantity per Torch-Pruning group: for group ``g`` of ``n`` channels and a few kept counts
``k < n``, a copy of the teacher in which only ``g`` keeps its ``k`` most important channels
(the library's group L2-magnitude ranking, the order every channel allocator removes them in)
is built with the library, as the final student will be, and run on the calibration images::

    drift_g(k) = mean over images and pixels of (student(x) - teacher(x))^2

together with the MACs that removing those channels saves (counted by the project's counter
at the tracing input's size). Squared errors of small independent perturbations add, so,
as for unstructured pruning, the network's drift is modelled as the sum of the groups'
drifts, and the allocation minimises it at the MAC target. The solution of that separable
problem for every Lagrange multiplier is a greedy one over *marginal costs*: each removable
channel of a group gets the slope of the group's drift curve (its lower convex hull, linear
between measured counts) per MAC saved, and the channels with the lowest slopes over all
groups go first (:func:`adaptive_scores`). The channel allocator then treats these slopes as
it treats the ``global`` allocator's magnitudes: a single pruning ratio, bisected on the
counted MACs, removes the lowest-scored channels (:func:`~dreamprune_cli.prune.channel.allocate.
kept_for_ratio`).

Why measured drift rather than a first-order (Taylor) proxy: a first-order estimate of the
output change needs gradients at the teacher, where the output loss is zero and its gradient
vanishes; second-order proxies need Hessian approximations a restoration network does not
make cheap. Removing the channels for real also sees what a proxy cannot: channel attention
and normalisation re-scaling the channels that remain.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

from dreamprune_cli.errors import RuntimeFailure
from dreamprune_cli.flops import count_costs
from dreamprune_cli.progress import NullProgress, ProgressSink
from dreamprune_cli.prune.channel.graph import ChannelGroup

log = logging.getLogger(__name__)

DEFAULT_CHANNEL_LEVELS: tuple[float, ...] = (0.75, 0.5, 0.25)
"""Fractions of a group's channels kept at which its drift is measured, besides the least
count the group may keep (``min_keep``); counts are rounded and de-duplicated."""


@dataclass
class GroupDrift:
    """Drift curve of one channel group.

    Attributes:
        root: the group's root layer.
        channels: channels in the group.
        kept: measured kept counts, descending; the first is ``channels`` (drift 0).
        drift: mean squared output difference to the teacher at each count.
        macs_saved: MACs saved at each count, at the tracing input's size.
    """

    root: str
    channels: int
    kept: list[int]
    drift: list[float]
    macs_saved: list[int]


@dataclass
class ChannelDrift:
    """Drift curves of every prunable group, and how they were measured."""

    groups: list[GroupDrift]
    seconds: float
    images: int
    image_size: tuple[int, int]
    evaluations: int

    def as_dict(self) -> dict[str, object]:
        return {"seconds": self.seconds, "images": self.images,
                "image_size": list(self.image_size), "evaluations": self.evaluations,
                "groups": {g.root: {"kept": g.kept, "drift": g.drift,
                                    "macs_saved": g.macs_saved} for g in self.groups}}


def level_counts(channels: int, least: int, keep_levels: Sequence[float]) -> list[int]:
    """Kept counts measured for a group: ``round(level * channels)`` for each level, and
    ``least``; only counts in ``[least, channels)``, descending, without repeats."""
    counts = {min(channels - 1, max(least, round(level * channels))) for level in keep_levels}
    counts.add(least)
    return sorted((c for c in counts if least <= c < channels), reverse=True)


def measure_channel_drift(network: nn.Module, example: torch.Tensor, groups: Sequence[ChannelGroup],
                          least: Sequence[int], prune: Callable[[list[int]], nn.Module],
                          wrap: Callable[[nn.Module], nn.Module], calibration: torch.Tensor,
                          keep_levels: Sequence[float] = DEFAULT_CHANNEL_LEVELS,
                          progress: ProgressSink | None = None) -> ChannelDrift:
    """Drift curve of every group, one group thinned at a time.

    Args:
        network: the bare teacher (not modified), on the CPU.
        example: the tracing input ``(1, C, S, S)``; MACs saved are counted at its size.
        groups: :class:`~dreamprune_cli.prune.channel.graph.ChannelGroup` list.
        least: the fewest channels each group may keep.
        prune: kept counts per group -> a thinner copy of ``network`` (the library's removal).
        wrap: bare network -> the module called on RGB images (the restoration adapter).
        calibration: ``(B, 3, H, W)`` degraded images in [0, 1].
        keep_levels: fractions of each group's channels kept at which drift is measured.
        progress: one step per group.

    Raises:
        RuntimeFailure: the network produced NaN/inf on the calibration images.
    """
    progress = progress or NullProgress()
    start = time.perf_counter()
    images = calibration.detach().float().cpu()
    size = tuple(example.shape[1:])
    full = [g.channels for g in groups]
    dense_macs = count_costs(network, size).macs
    evaluations = 0
    curves = []
    progress.start("channel drift", len(groups), "groups")
    with torch.no_grad():
        reference = wrap(copy.deepcopy(network).eval())(images).float()
    for index, group in enumerate(groups):
        counts = level_counts(group.channels, least[index], keep_levels)
        drift, saved = [0.0], [0]
        for count in counts:
            kept = list(full)
            kept[index] = count
            thinner = prune(kept)
            with torch.no_grad():
                out = wrap(thinner)(images).float()
            value = float((out - reference).pow(2).mean())
            if not math.isfinite(value):
                raise RuntimeFailure(f"channel drift of group {group.root}: the network "
                                     "produced NaN/inf on the calibration images")
            drift.append(value)
            saved.append(dense_macs - count_costs(thinner, size).macs)
            evaluations += 1
        curves.append(GroupDrift(root=group.root, channels=group.channels,
                                 kept=[group.channels, *counts], drift=drift,
                                 macs_saved=saved))
        progress.update(index + 1, group=group.root)
    progress.finish()
    seconds = time.perf_counter() - start
    log.info("channel drift of %d groups (%d thinner copies) on %d images in %.1f s",
             len(groups), evaluations, images.shape[0], seconds)
    return ChannelDrift(groups=curves, seconds=seconds, images=int(images.shape[0]),
                        image_size=(int(images.shape[-2]), int(images.shape[-1])),
                        evaluations=evaluations)


def lower_hull_slopes(removed: Sequence[int], drift: Sequence[float]) -> list[float]:
    """Per removed channel ``j = 1..removed[-1]``, the slope of the lower convex hull of the
    points ``(removed[i], drift[i])`` over the segment holding ``j``.

    ``removed`` starts at 0 and increases. The slopes do not decrease, so removing channels
    in order of slope over all groups removes each group's channels in its own order.
    """
    points = list(zip(removed, drift))
    hull: list[tuple[int, float]] = []
    for point in points:
        while len(hull) >= 2:
            (x0, y0), (x1, y1) = hull[-2], hull[-1]
            # drop hull[-1] when it lies on or above the line from hull[-2] to point
            if (y1 - y0) * (point[0] - x0) >= (point[1] - y0) * (x1 - x0):
                hull.pop()
            else:
                break
        hull.append(point)
    slopes = []
    for (x0, y0), (x1, y1) in zip(hull, hull[1:]):
        slopes += [(y1 - y0) / (x1 - x0)] * (x1 - x0)
    return slopes


def adaptive_scores(groups: Sequence[ChannelGroup], drift: ChannelDrift) -> list[ChannelGroup]:
    """Copies of ``groups`` whose ``scores`` are the marginal drift per MAC of each channel.

    The channel removed ``j``-th from group ``g`` (in the group's ``order``) scores the slope
    of ``g``'s drift curve at ``j`` (:func:`lower_hull_slopes`, drift normalised by the
    largest measured drift) divided by the MACs one channel of ``g`` saves. Channels the
    group must keep score above every removable one. Ranking all groups' channels by these
    scores and removing the lowest first is the greedy solution of: minimise the summed drift
    subject to the kept MACs.
    """
    top = max((max(c.drift) for c in drift.groups), default=0.0)
    scale = top if top > 0 else 1.0
    scored = []
    for group, curve in zip(groups, drift.groups, strict=True):
        removed = [group.channels - k for k in curve.kept]
        slopes = lower_hull_slopes(removed, [d / scale for d in curve.drift])
        per_channel = curve.macs_saved[-1] / removed[-1] if removed[-1] else 0.0
        if per_channel > 0:
            marginal = [s / per_channel for s in slopes]
        else:  # removing its channels saves nothing: never worth it
            marginal = [math.inf] * len(slopes)
        finite = [m for m in marginal if math.isfinite(m)]
        above = (max(finite) if finite else 0.0) + 1.0
        scores = [above] * group.channels
        for position, value in zip(group.order, marginal):
            scores[position] = value if math.isfinite(value) else above
        scored.append(replace(group, scores=scores))
    return scored
