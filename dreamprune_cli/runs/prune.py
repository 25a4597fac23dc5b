"""``prune``: keep exactly a fraction of a model's MACs (weight masks, whole channels, blocks
and stages) and write the student, its masks and the report into the output folder.

The settings become one :class:`~dreamprune_cli.prune.spec.PruneSpec`
(:func:`~dreamprune_cli.settings.resolve_prune_spec`, every refusal before any work), which
:func:`~dreamprune_cli.runkit.pruning.prune_teacher` hands to the granularity's planner
(:func:`~dreamprune_cli.prune.dispatch.prune_to_spec`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamprune_cli.data.calibration import calibration_from_dir
from dreamprune_cli.fileio import ensure_output_dir
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.prune.result import PruneResult, write_prune_outputs
from dreamprune_cli.report import ResultTable
from dreamprune_cli.runkit.context import load_teacher, require, runtime
from dreamprune_cli.runkit.pruning import prune_teacher
from dreamprune_cli.settings import ResolvedSettings, resolve_prune_spec

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


def run(resolved: ResolvedSettings, progress: ProgressSink | None = None) -> PruneRun:
    """Prune the model the settings name and write ``student.safetensors``,
    ``masks.safetensors`` (unstructured) and ``report.json`` into ``out``.

    Raises:
        UsageError: no ``out``, a non-empty folder without ``overwrite``, a channel multiple
            with unstructured pruning (before any work), bad weights, an unreachable target.
    """
    common = resolved.settings.common
    spec = resolve_prune_spec(resolved)  # contradictory settings: refused before any work
    out = require(common.out, "out", ": the folder for student.safetensors, "
                                     "masks.safetensors and report.json")
    if out.exists():  # refuse a non-empty folder before any work
        ensure_output_dir(out, common.overwrite)
    images = None
    if spec.calibration_dir is not None:
        images = calibration_from_dir(spec.calibration_dir, spec.calibration_count,
                                      spec.calibration_size, spec.seed)
    elif spec.calibration_ignored:
        log.warning("--calibration is only used by the adaptive allocator; ignored")
    device, _precision, _sync = runtime(common)
    teacher = load_teacher(common)
    result = prune_teacher(teacher, spec, device, images, progress)
    files = write_prune_outputs(result, out, overwrite=common.overwrite)
    return PruneRun(result=result, out_dir=out, files=files)
