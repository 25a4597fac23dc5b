"""``prune``: keep exactly a fraction of a model's MACs (weight masks, whole channels, blocks
and stages) and write the student, its masks and the report into the output folder.

The settings become one :class:`~dreamprune_cli.prune.spec.PruneSpec`
(:func:`~dreamprune_cli.settings.resolve_prune_spec`, every refusal before any work), which
:func:`~dreamprune_cli.prune.dispatch.prune_to_spec` hands to the granularity's planner."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli.data.calibration import calibration_from_dir
from dreamprune_cli.engine.latency import square_latency
from dreamprune_cli.fileio import ensure_output_dir
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.prune.dispatch import prune_to_spec
from dreamprune_cli.prune.reconstruct import reconstruct_student
from dreamprune_cli.prune.result import PruneResult, write_prune_outputs
from dreamprune_cli.prune.spec import PruneSpec
from dreamprune_cli.report import ResultTable
from dreamprune_cli.runkit.context import load_teacher, require, runtime
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


LATENCY_TRIES = 4
"""Plans measured at most by ``--latency-target`` before it settles for the fastest."""


def prune_teacher(teacher: LoadedModel, spec: PruneSpec, device: torch.device,
                  calibration: torch.Tensor | None = None,
                  progress: ProgressSink | None = None) -> PruneResult:
    """Prune ``teacher`` as ``spec`` says: to its MAC target, or to its latency target
    (:func:`prune_to_latency`); with ``spec.reconstruct``, then repair the student
    (:func:`reconstruct_result`)."""
    if spec.latency_target is not None:
        result = prune_to_latency(teacher, spec, device, calibration, progress)
    else:
        result = prune_to_spec(teacher, spec, spec.flops_target, device, calibration, progress)
    if spec.reconstruct:
        reconstruct_result(teacher, result, spec, progress)
    return result


def reconstruct_result(teacher: LoadedModel, result: PruneResult, spec: PruneSpec,
                       progress: ProgressSink | None = None) -> None:
    """Refit the structured student of ``result`` in place by layer-wise least squares
    (:func:`~dreamprune_cli.prune.reconstruct.reconstruct_student`) on
    ``spec.reconstruct_count`` images of side ``spec.reconstruct_size``: patches of
    ``spec.reconstruct_dir`` when set, else synthetic degraded images of the model's task.
    Its report goes into ``result.details["reconstruction"]`` and its time into
    ``result.seconds``."""
    images = None
    if spec.reconstruct_dir is not None:
        images = calibration_from_dir(spec.reconstruct_dir, spec.reconstruct_count,
                                      spec.reconstruct_size, spec.seed)
    report = reconstruct_student(teacher, result.student, images, count=spec.reconstruct_count,
                                 size=spec.reconstruct_size, seed=spec.seed, progress=progress)
    result.details["reconstruction"] = report.as_dict()
    result.seconds += report.seconds
    log.info("%s", report.describe())


def prune_to_latency(teacher: LoadedModel, spec: PruneSpec, device: torch.device,
                     calibration: torch.Tensor | None = None,
                     progress: ProgressSink | None = None) -> PruneResult:
    """Plan on MACs, measure the student's time against the teacher's, re-plan.

    The first plan keeps ``latency_target`` of the MACs; each next one scales the MAC ratio
    reached by ``latency_target / measured ratio``, at most :data:`LATENCY_TRIES` plans. The
    first plan at or below the target is the student; if none is, the fastest measured, with
    a warning. Every try (MAC target, MAC ratio, latency ratio) is in
    ``details["latency_target"]``.
    """
    target = spec.latency_target
    assert target is not None
    teacher_adapter = teacher.adapter().to(device)
    tries: list[dict[str, float]] = []
    best: tuple[float, PruneResult] | None = None
    flops = target
    for _ in range(LATENCY_TRIES):
        result = prune_to_spec(teacher, spec, flops, device, calibration, progress)
        student = result.student.adapter().to(device)
        timing = square_latency(teacher_adapter, student, spec.flops_size, device, spec.seed)
        tries.append({"flops_target": flops, "macs_ratio": result.macs_ratio,
                      "latency_ratio": timing.ratio})
        log.info("latency target %.3g: %.4f of the MACs runs in %.3f of the teacher's time",
                 target, result.macs_ratio, timing.ratio)
        if best is None or timing.ratio < best[0]:
            best = (timing.ratio, result)
        if timing.ratio <= target:
            break
        flops = result.macs_ratio * target / timing.ratio
    ratio, result = best  # type: ignore[misc]
    if ratio > target:
        log.warning("$latency_target %s: the fastest of %d plans runs in %.3f of the "
                    "teacher's time (%.4f of the MACs)", target, len(tries), ratio,
                    result.macs_ratio)
    result.details["latency_target"] = {"target": target, "latency_ratio": ratio,
                                        "met": ratio <= target, "tries": tries,
                                        "size": spec.flops_size, "device": str(device),
                                        "threads": torch.get_num_threads()}
    return result


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
