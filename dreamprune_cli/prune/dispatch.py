"""The seam between a run and the planners: a :class:`~dreamprune_cli.prune.spec.PruneSpec`
in, the granularity's planner called, a :class:`~dreamprune_cli.prune.result.PruneResult` out.

One planner per granularity (:data:`PLANNERS`), each taking the spec's values as plain typed
arguments; a new granularity adds its subpackage and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.prune.channel.plan import prune_channels
from dreamprune_cli.prune.depth.plan import prune_depth, prune_depth_channel
from dreamprune_cli.prune.result import PruneResult
from dreamprune_cli.prune.spec import PruneSpec
from dreamprune_cli.prune.unstructured.plan import prune_model

Planner = Callable[[LoadedModel, PruneSpec, float, "torch.device | None",
                    "torch.Tensor | None", "ProgressSink | None"], PruneResult]


def _unstructured(teacher: LoadedModel, spec: PruneSpec, flops_target: float,
                  device: torch.device | None, calibration: torch.Tensor | None,
                  progress: ProgressSink | None) -> PruneResult:
    return prune_model(teacher, flops_target, spec.allocator, flops_size=spec.flops_size,
                       exclude=spec.exclude, calibration=calibration,
                       use_default_exclude=spec.default_exclude, device=device,
                       calibration_count=spec.calibration_count,
                       calibration_size=spec.calibration_size, seed=spec.seed,
                       min_keep=spec.min_keep, progress=progress)


def _channel(teacher: LoadedModel, spec: PruneSpec, flops_target: float,
             device: torch.device | None, calibration: torch.Tensor | None,
             progress: ProgressSink | None) -> PruneResult:
    return prune_channels(teacher, flops_target, spec.allocator, flops_size=spec.flops_size,
                          exclude=spec.exclude, min_keep=spec.min_keep,
                          channel_multiple=spec.channel_multiple, calibration=calibration,
                          calibration_count=spec.calibration_count,
                          calibration_size=spec.calibration_size, seed=spec.seed,
                          progress=progress)


def _depth(teacher: LoadedModel, spec: PruneSpec, flops_target: float,
           device: torch.device | None, calibration: torch.Tensor | None,
           progress: ProgressSink | None) -> PruneResult:
    return prune_depth(teacher, flops_target, flops_size=spec.flops_size,
                       calibration=calibration, calibration_count=spec.calibration_count,
                       calibration_size=spec.calibration_size, seed=spec.seed,
                       progress=progress)


def _depth_channel(teacher: LoadedModel, spec: PruneSpec, flops_target: float,
                   device: torch.device | None, calibration: torch.Tensor | None,
                   progress: ProgressSink | None) -> PruneResult:
    return prune_depth_channel(teacher, flops_target, spec.allocator,
                               flops_size=spec.flops_size,
                               channel_multiple=spec.channel_multiple, exclude=spec.exclude,
                               min_keep=spec.min_keep, calibration=calibration,
                               calibration_count=spec.calibration_count,
                               calibration_size=spec.calibration_size, seed=spec.seed,
                               progress=progress)


PLANNERS: dict[str, Planner] = {"unstructured": _unstructured, "channel": _channel,
                                "depth": _depth, "depth+channel": _depth_channel}
"""Granularity -> its planner, called with the spec's values."""


def prune_to_spec(teacher: LoadedModel, spec: PruneSpec, flops_target: float | None = None,
                  device: torch.device | None = None, calibration: torch.Tensor | None = None,
                  progress: ProgressSink | None = None) -> PruneResult:
    """Prune ``teacher`` as ``spec`` says.

    Args:
        teacher: left untouched.
        spec: granularity, allocator, sizes, exclusions, calibration settings.
        flops_target: the MAC target of this plan (a latency target plans several); default
            ``spec.flops_target``.
        device: where unstructured drift is measured (the other granularities measure on
            the CPU).
        calibration: ``(B, 3, H, W)`` degraded images in [0, 1] for drift; ``None``:
            ``spec.calibration_count`` synthetic images of side ``spec.calibration_size``.
        progress: receives the drift measurement's steps.
    """
    target = spec.flops_target if flops_target is None else flops_target
    return PLANNERS[spec.granularity](teacher, spec, target, device, calibration, progress)
