"""``prune --granularity depth`` and ``depth+channel``: fewer blocks and stages (and thinner
layers) at a MAC target, returning the same :class:`~dreamprune_cli.prune.result.PruneResult`
as the other granularities.

* ``depth``: the greedy path (:func:`~dreamprune_cli.prune.depth.search.greedy_path`) from
  the teacher down to the target, and every state one cut from its last state above the
  target (:func:`~dreamprune_cli.prune.depth.search.finishing_steps`); among the states
  within the budget (the target plus :data:`DEPTH_TOLERANCE`), the one whose output drifts
  least is the student. Removals are coarse (a PReNet stage is 1/6 of its MACs), so the ratio reached may
  miss the target: a miss above :data:`DEPTH_TOLERANCE` is reported with the neighbours.
* ``depth+channel``: every state on that path (and the finishing states) above the budget is
  completed by channel pruning down to the target
  (:func:`~dreamprune_cli.prune.channel.plan.prune_channels` on the depth student), every
  state within it is a candidate as it is; among the candidates within the budget, the one
  whose output drifts least from the teacher's on the calibration images is the student
  (when whole channels meet it nowhere, the smallest). The split between depth and width is thus chosen by
  measured drift, not fixed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import torch

from dreamprune_cli.data.calibration import synthetic_calibration
from dreamprune_cli.errors import UsageError
from dreamprune_cli.flops import count_costs
from dreamprune_cli.models.adapter import RestorationAdapter, network_input_size
from dreamprune_cli.models.channel_map import identity_map
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.prune.channel.plan import prune_channels
from dreamprune_cli.prune.channel.allocate import trace_input
from dreamprune_cli.prune.depth.candidates import DepthSpace, find_depth_space
from dreamprune_cli.prune.depth.search import DepthSearch, DepthStep, finishing_steps, greedy_path
from dreamprune_cli.prune.spec import DEFAULT_MIN_KEEP
from dreamprune_cli.prune.result import (PruneResult, channel_multiple_metadata,
                                         structured_layers)

log = logging.getLogger(__name__)

DEPTH_TOLERANCE = 0.02
"""Largest relative miss of the MAC target that a depth plan does not warn about."""

DEPTH_CALIBRATION_SIZE = 256
"""Default side of the depth allocator's calibration images: GCANet's block ranking on
192 px crops differed from the full-size one (docs/RESULTS.md), so depth measures larger
images than the adaptive allocator's 64 px patches."""


def _check_size(loaded: LoadedModel, flops_size: int) -> None:
    multiple = loaded.info.size_multiple
    if flops_size < 1 or flops_size % multiple:
        raise UsageError(f"$flops_size {flops_size}: expected a multiple of {multiple} for "
                         f"{loaded.name}")


def _search(loaded: LoadedModel, flops_size: int, calibration: torch.Tensor | None,
            calibration_count: int, calibration_size: int, seed: int) -> DepthSearch:
    if calibration is None:
        log.info("depth: drift measured on %d synthetic %s images of %d px", calibration_count,
                 loaded.info.task, calibration_size)
        calibration = synthetic_calibration(loaded.info.task, calibration_count,
                                            calibration_size, seed)
    return DepthSearch(teacher=loaded.network.eval(),
                       wrap=lambda network: RestorationAdapter(network, loaded.info),
                       calibration=calibration,
                       input_size=network_input_size(loaded.info, flops_size))


def _student(loaded: LoadedModel, step: DepthStep, granularity: str = "depth") -> LoadedModel:
    network = step.state.apply(loaded.network).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(True)
    return LoadedModel(name=loaded.name, info=loaded.info, network=network,
                       config={**loaded.config, **dict(step.state.repeats)},
                       weights=loaded.weights, granularity=granularity,
                       kept_channels=identity_map(network))  # blocks go, widths stay


def within_budget(macs_ratio: float, target: float) -> bool:
    """Whether a plan keeping ``macs_ratio`` of the MACs meets the MAC target ``target``: at
    most the target plus :data:`DEPTH_TOLERANCE` of it (a MAC target is a budget)."""
    return macs_ratio <= target * (1 + DEPTH_TOLERANCE)


def _least_drift(states: Sequence[DepthStep], target: float) -> DepthStep:
    """The plan within the budget whose output drifts least from the teacher's (removing
    more rarely drifts less, so this is mostly the largest plan within it, but a smaller
    plan that also drifts less dominates); the smallest plan when none fits."""
    fits = [step for step in states if within_budget(step.macs_ratio, target)]
    if not fits:
        return min(states, key=lambda step: (step.macs_ratio, step.mse))
    return min(fits, key=lambda step: (step.mse, -step.macs_ratio))


def _result(loaded: LoadedModel, student: LoadedModel, flops_target: float, flops_size: int,
            allocator: str, details: dict, start: float,
            metadata: dict[str, str] | None = None) -> PruneResult:
    input_size = network_input_size(loaded.info, flops_size)
    before = count_costs(loaded.network, input_size)
    after = count_costs(student.network, input_size)
    ratio = after.macs / before.macs_dense
    within = abs(ratio - flops_target) <= DEPTH_TOLERANCE * flops_target
    if not within:
        log.warning("%s at $flops_target %s: the least drifting plan within it keeps %.4f "
                    "of the MACs (removals are whole blocks and stages; plans measured: %s)",
                    student.granularity, flops_target, ratio, ", ".join(
                        f"{s['macs_ratio']:.3f}"
                        for s in [*details["path"], *details.get("finishing", [])]))
    details = {**details, "tolerance": DEPTH_TOLERANCE, "within_tolerance": within}
    return PruneResult(
        student=student, allocator=allocator, flops_target=flops_target, flops_size=flops_size,
        scalar_name="macs_ratio", scalar=ratio, macs_dense=before.macs_dense,
        macs_before=before.macs, macs_after=after.macs, params_dense=before.params,
        params_before=before.params_nonzero, params_after=after.params_nonzero,
        layers=structured_layers(loaded.network, student.network, before, after),
        exclude=list(loaded.info.prune_exclude), seconds=time.perf_counter() - start,
        details=details, metadata=dict(metadata or {}))


def prune_depth(loaded: LoadedModel, flops_target: float, flops_size: int = 256,
                calibration: torch.Tensor | None = None, calibration_count: int = 4,
                calibration_size: int = DEPTH_CALIBRATION_SIZE, seed: int = 0,
                progress: ProgressSink | None = None) -> PruneResult:
    """Remove whole residual blocks, branches and repeated stages from a copy of
    ``loaded.network`` to keep about ``flops_target`` of its MACs.

    Args:
        loaded: the teacher (left untouched).
        flops_target: fraction F in (0, 1] of the dense MACs at ``3 x flops_size^2``.
        flops_size: square side at which MACs are counted.
        calibration: ``(B, 3, H, W)`` degraded images in [0, 1] on which drift is measured;
            ``None`` draws ``calibration_count`` synthetic images of the model's task of side
            ``calibration_size``, seeded by ``seed``.
        progress: receives the measurement count.

    Returns:
        A result with ``granularity="depth"``; ``details`` holds the candidates, the greedy
        path (each state's MAC ratio and PSNR to the teacher's output) and what was removed.

    Raises:
        UsageError: bad size or target, or a model with nothing to remove.
    """
    start = time.perf_counter()
    _check_size(loaded, flops_size)
    space = find_depth_space(loaded, _probe(loaded))  # nothing to remove: refused first
    search = _search(loaded, flops_size, calibration, calibration_count, calibration_size, seed)
    path = greedy_path(search, space, flops_target, progress)
    finishing = finishing_steps(search, space, path)
    chosen = _least_drift([*path, *finishing], flops_target)
    student = _student(loaded, chosen)
    details = {**_details(space, path, chosen, search),
               "finishing": [step.as_dict() for step in finishing]}
    return _result(loaded, student, flops_target, flops_size, "drift", details, start)


def prune_depth_channel(loaded: LoadedModel, flops_target: float, channel_allocator: str,
                        flops_size: int = 256, channel_multiple: int = 1,
                        exclude: Sequence[str] = (), min_keep: float = DEFAULT_MIN_KEEP,
                        calibration: torch.Tensor | None = None, calibration_count: int = 4,
                        calibration_size: int = DEPTH_CALIBRATION_SIZE, seed: int = 0,
                        progress: ProgressSink | None = None) -> PruneResult:
    """Depth and channel pruning together: the split chosen by drift (module docstring).

    Args: as :func:`prune_depth`, plus the channel part's ``channel_allocator``,
    ``channel_multiple``, ``exclude`` and ``min_keep`` (see
    :func:`~dreamprune_cli.prune.channel.plan.prune_channels`).

    Returns:
        A result with ``granularity="depth+channel"`` (or ``"depth"`` when removing blocks
        alone drifted least); ``details["splits"]`` lists every candidate split measured.

    Raises:
        UsageError: bad size, target or allocator, or a model with nothing to remove in depth.
    """
    start = time.perf_counter()
    _check_size(loaded, flops_size)
    space = find_depth_space(loaded, _probe(loaded))  # nothing to remove: refused first
    search = _search(loaded, flops_size, calibration, calibration_count, calibration_size, seed)
    path = greedy_path(search, space, flops_target, progress)
    splits: list[tuple[float, LoadedModel, dict]] = []
    finishing = finishing_steps(search, space, path)
    states = [*path, *finishing]
    for step in states:
        depth_student = _student(loaded, step)
        if within_budget(step.macs_ratio, flops_target):  # blocks alone meet the budget
            candidate, mse = depth_student, step.mse
            channel_details: dict = {}
        else:
            relative = flops_target * search.macs_dense / step.macs
            pruned = prune_channels(depth_student, relative, channel_allocator,
                                    flops_size=flops_size, exclude=exclude, min_keep=min_keep,
                                    channel_multiple=channel_multiple,
                                    calibration=search.calibration, seed=seed,
                                    progress=progress)
            candidate = pruned.student
            candidate.granularity = "depth+channel"
            candidate.config = dict(depth_student.config)
            mse = search.drift_of(candidate.network)
            channel_details = {"channel_target": relative, **{
                k: pruned.details[k] for k in ("channel_multiple", "groups")}}
        macs_ratio = count_costs(candidate.network, search.input_size).macs / search.macs_dense
        split = {"removed": step.label, "depth_macs_ratio": step.macs_ratio,
                 "macs_ratio": macs_ratio,
                 "within_budget": within_budget(macs_ratio, flops_target), "mse": mse,
                 **channel_details}
        log.info("depth+channel: depth %s (%.3f of the MACs), %.3f in all -> drift %.3g",
                 step.label, step.macs_ratio, macs_ratio, mse)
        splits.append((mse, candidate, split))
    # least drift within the budget (channel steps can be coarse too); none: the smallest
    fits = [item for item in splits if item[2]["within_budget"]]
    if fits:
        _, student, best = min(fits, key=lambda item: (item[0], -item[2]["macs_ratio"]))
    else:
        _, student, best = min(splits, key=lambda item: (item[2]["macs_ratio"], item[0]))
    chosen = next(step for step in states if step.label == best["removed"])
    details = {**_details(space, path, chosen, search), "granularity": student.granularity,
               "finishing": [step.as_dict() for step in finishing],
               "channel_allocator": channel_allocator,
               "channel_multiple": channel_multiple,
               "splits": [split for _, _, split in splits], "chosen_split": best}
    return _result(loaded, student, flops_target, flops_size,
                   f"drift+{channel_allocator}", details, start,
                   channel_multiple_metadata(channel_multiple))


def _probe(loaded: LoadedModel) -> torch.Tensor:
    """A small input of the bare network for finding candidates (shapes, not values)."""
    channels = network_input_size(loaded.info, 8 * loaded.info.size_multiple)[0]
    return trace_input(loaded.info.size_multiple, channels=channels)


def _details(space: DepthSpace, path: Sequence[DepthStep], chosen: DepthStep,
             search: DepthSearch) -> dict:
    return {"granularity": "depth", "candidates": space.as_dict(),
            "removed": dict(chosen.state.removed),
            "repeats": {key: [space.repeats[key], count]
                        for key, count in chosen.state.repeats},
            "path": [step.as_dict() for step in path],
            "calibration": {"count": int(search.calibration.shape[0]),
                            "size": list(search.calibration.shape[-2:])},
            "states_measured": search.measured}
