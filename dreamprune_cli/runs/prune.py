"""``prune``: keep exactly a fraction of a model's MACs (weight masks or whole channels) and
write the student, its masks and the report into the output folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli.data.calibration import calibration_from_dir
from dreamprune_cli.errors import UsageError
from dreamprune_cli.fileio import ensure_output_dir
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.prune.channel_plan import channel_allocator, prune_channels
from dreamprune_cli.prune.plan import PruneResult, prune_model, write_prune_outputs
from dreamprune_cli.report import ResultTable
from dreamprune_cli.runs.context import load_teacher, require, runtime
from dreamprune_cli.settings import ResolvedSettings

log = logging.getLogger(__name__)


@dataclass
class PruneRun:
    """The pruning result and the files written for it."""

    result: PruneResult
    out_dir: Path
    files: dict[str, Path]

    def summary(self) -> dict[str, Any]:
        return {**self.result.as_dict(layers=False), "output": self.out_dir,
                "files": dict(self.files)}

    def layer_table(self) -> ResultTable:
        """One row per layer: what pruning kept of it."""
        r = self.result
        multiple = r.details.get("channel_multiple", 1)
        granularity = r.granularity + (f" (multiple {multiple})" if multiple > 1 else "")
        return ResultTable(
            f"layers of {r.student.name} ({r.allocator}, {granularity}, "
            f"MACs at 3x{r.flops_size}x{r.flops_size})",
            ["layer", "kind", "shape", "pruned", "weights", "kept", "keep", "MACs", "MACs kept"],
            [[layer.name, layer.kind, "x".join(map(str, layer.shape)),
              "yes" if layer.pruned else "no (excluded)", layer.params, layer.params_kept,
              layer.keep_ratio, layer.macs_dense, layer.macs_kept] for layer in r.layers])

    def tables(self) -> list[ResultTable]:
        r = self.result
        return [ResultTable(
            f"prune {r.student.name} -> {self.out_dir}",
            ["allocator", "target", "MACs ratio", "GMACs before", "GMACs after",
             "params before", "params after", "seconds"],
            [[r.allocator, r.flops_target, r.macs_ratio, r.macs_before / 1e9,
              r.macs_after / 1e9, r.params_before, r.params_after, r.seconds]])]


def allocator_for(resolved: ResolvedSettings) -> str:
    """The allocator the run uses: the setting, or at ``granularity = "channel"`` its channel
    form (:func:`~dreamprune_cli.prune.channel_plan.channel_allocator`)."""
    pr = resolved.settings.prune
    if pr.granularity == "unstructured":
        return pr.allocator
    return channel_allocator(pr.allocator, resolved.sources.get("allocator", "default"))


def channel_multiple_for(resolved: ResolvedSettings) -> int:
    """The channel multiple the run uses: the setting at ``granularity = "channel"``, 1 (no
    rounding) for unstructured pruning.

    A multiple above 1 given explicitly (config file, ``DREAMPRUNE_CHANNEL_MULTIPLE``, flag)
    with unstructured pruning contradicts it (a weight mask has no channel blocks); one from a
    preset or the record of a resumed run is ignored, as for the channel allocator
    (:func:`~dreamprune_cli.prune.channel_plan.channel_allocator`).

    Raises:
        UsageError: an explicit ``channel_multiple`` above 1 with unstructured pruning.
    """
    pr = resolved.settings.prune
    if pr.granularity == "channel":
        return pr.channel_multiple
    source = resolved.sources.get("channel_multiple", "default")
    if pr.channel_multiple > 1 and resolved.user_set("channel_multiple"):
        raise UsageError(f"$channel_multiple {pr.channel_multiple} (from {source}) applies "
                         f"only at $granularity channel (now {pr.granularity!r}, from "
                         f"{resolved.sources.get('granularity', 'default')}): drop it, or "
                         "add $granularity channel")
    return 1


def prune_teacher(teacher: LoadedModel, resolved: ResolvedSettings, device: torch.device,
                  calibration: torch.Tensor | None = None,
                  progress: ProgressSink | None = None) -> PruneResult:
    """Prune ``teacher`` as the prune settings say (granularity, allocator, target, size,
    exclusions, channel multiple, adaptive calibration: ``calibration`` images, else synthetic
    ones)."""
    pr, seed = resolved.settings.prune, resolved.settings.common.seed
    allocator = allocator_for(resolved)
    if pr.granularity == "channel":
        return prune_channels(teacher, pr.flops_target, allocator, flops_size=pr.flops_size,
                              exclude=pr.exclude, min_keep=pr.min_keep,
                              channel_multiple=channel_multiple_for(resolved),
                              calibration=calibration,
                              calibration_count=pr.calibration_count,
                              calibration_size=pr.calibration_size, seed=seed,
                              progress=progress)
    return prune_model(teacher, pr.flops_target, allocator, flops_size=pr.flops_size,
                       exclude=pr.exclude, calibration=calibration,
                       use_default_exclude=pr.default_exclude, device=device,
                       calibration_count=pr.calibration_count,
                       calibration_size=pr.calibration_size, seed=seed,
                       min_keep=pr.min_keep, progress=progress)


def run(resolved: ResolvedSettings, progress: ProgressSink | None = None) -> PruneRun:
    """Prune the model the settings name and write ``student.safetensors``,
    ``masks.safetensors`` (unstructured) and ``report.json`` into ``out``.

    Raises:
        UsageError: no ``out``, a non-empty folder without ``overwrite``, a channel multiple
            with unstructured pruning (before any work), bad weights, an unreachable target.
    """
    s = resolved.settings
    common, pr = s.common, s.prune
    channel_multiple_for(resolved)  # contradictory settings: refused before any work
    out = require(common.out, "out", ": the folder for student.safetensors, "
                                     "masks.safetensors and report.json")
    if out.exists():  # refuse a non-empty folder before any work
        ensure_output_dir(out, common.overwrite)
    images = None
    if pr.calibration is not None:
        if pr.allocator == "adaptive":
            images = calibration_from_dir(pr.calibration, pr.calibration_count,
                                          pr.calibration_size, common.seed)
        elif resolved.user_set("calibration"):
            log.warning("--calibration is only used by the adaptive allocator; ignored")
    device, _precision, _sync = runtime(common)
    teacher = load_teacher(common)
    result = prune_teacher(teacher, resolved, device, images, progress)
    files = write_prune_outputs(result, out, overwrite=common.overwrite)
    return PruneRun(result=result, out_dir=out, files=files)
