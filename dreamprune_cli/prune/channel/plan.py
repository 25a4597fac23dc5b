"""``prune --granularity channel``: a thinner copy of the teacher at a MAC target.

The channel machinery (Torch-Pruning's graph, groups, allocation by bisection) lives in
:mod:`dreamprune_cli.prune.channel.allocate`; this module turns its plan into the
:class:`~dreamprune_cli.prune.result.PruneResult` every granularity returns, so that
``write_prune_outputs``, the CLI tables and the pipeline treat them alike.
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
from dreamprune_cli.models.channel_map import map_problems
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.prune.channel.allocate import (CHANNEL_TOLERANCE, allocate_channels,
                                                   trace_input)
from dreamprune_cli.prune.channel.drift import DEFAULT_CHANNEL_LEVELS
from dreamprune_cli.prune.result import (PruneResult, channel_multiple_metadata,
                                         structured_layers)
from dreamprune_cli.prune.spec import DEFAULT_MIN_KEEP
from dreamprune_cli.prune.channel_map import kept_channel_map

log = logging.getLogger(__name__)

def prune_channels(loaded: LoadedModel, flops_target: float, allocator: str = "uniform",
                   flops_size: int = 256, exclude: Sequence[str] = (),
                   min_keep: float = DEFAULT_MIN_KEEP, channel_multiple: int = 1,
                   calibration: torch.Tensor | None = None, calibration_count: int = 4,
                   calibration_size: int = 64, seed: int = 0,
                   keep_levels: Sequence[float] = DEFAULT_CHANNEL_LEVELS,
                   progress: ProgressSink | None = None) -> PruneResult:
    """Remove whole channels from a copy of ``loaded.network`` to keep ``flops_target`` MACs.

    Args:
        loaded: the teacher (left untouched).
        flops_target: fraction F in (0, 1] of the dense MACs at ``3 x flops_size^2``.
        allocator: ``uniform``, ``global``, ``lamp`` or ``adaptive``
            (:mod:`dreamprune_cli.prune.channel.allocate`).
        flops_size: square side at which MACs are counted (a multiple of the model's
            ``size_multiple``).
        exclude: module-name globs whose output channels are kept (``--exclude``).
        min_keep: every group keeps at least this fraction of its channels (and one).
        channel_multiple: every group wider than this keeps a multiple of it (1: any count;
            16 suits CPU convolution kernels, see
            :func:`~dreamprune_cli.prune.channel.allocate.round_kept`).
        calibration: ``(B, 3, H, W)`` degraded images in [0, 1] on which ``adaptive``
            measures drift (on the CPU); ``None`` uses ``calibration_count`` synthetic images
            of side ``calibration_size`` of the model's task, seeded by ``seed``.
        keep_levels: ``adaptive``: fractions of each group's channels kept at which its
            drift is measured.
        progress: receives the drift measurement's steps.

    Returns:
        A :class:`PruneResult` with ``granularity="channel"``: its student is the thinner
        network with its kept-channel map (``student.kept_channels``,
        :func:`~dreamprune_cli.prune.channel_map.kept_channel_map`), ``scalar`` the pruning
        ratio, ``details`` the groups and their channels.

    Raises:
        UsageError: bad size, allocator or target, an unreachable target, a network the
            library cannot trace.
    """
    start = time.perf_counter()
    multiple = loaded.info.size_multiple
    if flops_size < 1 or flops_size % multiple:
        raise UsageError(f"$flops_size {flops_size}: expected a multiple of {multiple} for "
                         f"{loaded.name}")
    input_size = network_input_size(loaded.info, flops_size)  # GCANet: 4 channels
    teacher = loaded.network.eval()
    before = count_costs(teacher, input_size)
    if allocator == "adaptive" and calibration is None:
        log.info("no calibration images: using %d synthetic %s images of %d px",
                 calibration_count, loaded.info.task, calibration_size)
        calibration = synthetic_calibration(loaded.info.task, calibration_count,
                                            calibration_size, seed)
    plan = allocate_channels(teacher, trace_input(multiple, channels=input_size[0]), input_size,
                             flops_target, allocator, min_keep, exclude, loaded.name,
                             calibration=calibration,
                             wrap=lambda network: RestorationAdapter(network, loaded.info),
                             keep_levels=keep_levels, progress=progress,
                             multiple=channel_multiple)
    student_network = plan.network.eval()
    for parameter in student_network.parameters():
        parameter.requires_grad_(True)
    after = count_costs(student_network, input_size)
    layers = structured_layers(teacher, student_network, before, after)
    kept_channels = kept_channel_map(teacher, plan.groups, plan.kept)
    problems = map_problems(student_network, kept_channels)
    if problems:  # widths the removal and the map disagree on: record no map rather than a wrong one
        log.warning("%s: the kept-channel map does not fit the student (%s); the student "
                    "carries no map", loaded.name, "; ".join(problems[:3]))
        kept_channels = None
    student = LoadedModel(name=loaded.name, info=loaded.info, network=student_network,
                          config=dict(loaded.config), weights=loaded.weights,
                          granularity="channel", kept_channels=kept_channels)
    details = {
        "granularity": "channel",
        "tolerance": CHANNEL_TOLERANCE,
        "channel_multiple": channel_multiple,
        "within_tolerance": plan.within_tolerance,
        "protected_layers": plan.protected,
        "groups": [{"root": g.root, "layers": g.layers, "channels": g.channels, "kept": k}
                   for g, k in zip(plan.groups, plan.kept)],
        "bisection": [{"ratio": r, "macs_ratio": m} for r, m in plan.tried],
    }
    if plan.drift is not None:
        details["drift"] = plan.drift.as_dict()
    log.info("%s: %d channel groups, %d of %d channels kept, %.4f of the MACs", loaded.name,
             len(plan.groups), sum(plan.kept), sum(g.channels for g in plan.groups),
             after.macs / before.macs_dense)
    return PruneResult(
        student=student, allocator=allocator, flops_target=flops_target,
        flops_size=flops_size, scalar_name="pruning_ratio", scalar=float(plan.scalar),
        macs_dense=before.macs_dense, macs_before=before.macs, macs_after=after.macs,
        params_dense=before.params, params_before=before.params_nonzero,
        params_after=after.params_nonzero, layers=layers, exclude=list(plan.protected),
        seconds=time.perf_counter() - start, drift=None, details=details,
        metadata=channel_multiple_metadata(channel_multiple))
