"""``prune``: keep exactly a fraction of a model's MACs (weight masks or whole channels) and
write the student, its masks and the report into the output folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli.data.calibration import calibration_from_dir
from dreamprune_cli.engine.latency import square_latency
from dreamprune_cli.errors import UsageError
from dreamprune_cli.fileio import ensure_output_dir
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.prune.channel_plan import channel_allocator, prune_channels
from dreamprune_cli.prune.depth.plan import prune_depth, prune_depth_channel
from dreamprune_cli.prune.plan import PruneResult, prune_model, write_prune_outputs
from dreamprune_cli.prune.reconstruct import reconstruct_student
from dreamprune_cli.report import ResultTable
from dreamprune_cli.runkit.context import load_teacher, require, runtime
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
    """The allocator the run uses: the setting; at ``granularity = "channel"`` or
    ``"depth+channel"`` its channel form
    (:func:`~dreamprune_cli.prune.channel_plan.channel_allocator`); at ``"depth"``
    ``drift`` (blocks are chosen by measured drift per MAC saved).

    Raises:
        UsageError: an explicit allocator at ``granularity = "depth"``, or one without a
            channel form at a channel granularity.
    """
    pr = resolved.settings.prune
    source = resolved.sources.get("allocator", "default")
    if pr.granularity == "unstructured":
        return pr.allocator
    if pr.granularity == "depth":
        if resolved.user_set("allocator"):
            raise UsageError(f"$allocator {pr.allocator!r} (from {source}) at $granularity "
                             "depth: depth pruning chooses blocks by measured drift; drop "
                             "$allocator, or use $granularity depth+channel")
        return "drift"
    return channel_allocator(pr.allocator, source)


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
    if pr.granularity in ("channel", "depth+channel"):
        return pr.channel_multiple
    source = resolved.sources.get("channel_multiple", "default")
    if pr.channel_multiple > 1 and resolved.user_set("channel_multiple"):
        raise UsageError(f"$channel_multiple {pr.channel_multiple} (from {source}) applies "
                         f"only at $granularity channel or depth+channel (now "
                         f"{pr.granularity!r}, from "
                         f"{resolved.sources.get('granularity', 'default')}): drop it, or "
                         "add $granularity channel")
    return 1


LATENCY_TRIES = 4
"""Plans measured at most by ``--latency-target`` before it settles for the fastest."""


def check_latency_target(resolved: ResolvedSettings) -> None:
    """Refuse ``latency_target`` where it cannot work, before any work.

    Raises:
        UsageError: with unstructured pruning (masks keep the teacher's speed), or together
            with an explicit ``flops_target``.
    """
    pr = resolved.settings.prune
    if pr.latency_target is None:
        return
    source = resolved.sources.get("latency_target", "default")
    if pr.granularity == "unstructured":
        raise UsageError(f"$latency_target {pr.latency_target} (from {source}) needs a "
                         "structured $granularity (channel, depth, depth+channel): weight "
                         "masks do not make the network faster")
    if resolved.user_set("flops_target"):
        raise UsageError(f"$latency_target (from {source}) and $flops_target (from "
                         f"{resolved.sources['flops_target']}): give one of them")


def check_reconstruct(resolved: ResolvedSettings) -> None:
    """Refuse ``reconstruct`` with weight masks, before any work.

    Raises:
        UsageError: ``reconstruct`` with ``granularity = "unstructured"``.
    """
    pr = resolved.settings.prune
    if pr.reconstruct and pr.granularity == "unstructured":
        raise UsageError(f"$reconstruct (from {resolved.sources.get('reconstruct', 'default')}) "
                         "needs a structured $granularity (channel, depth, depth+channel): "
                         "least squares does not keep weight masks")


def prune_teacher(teacher: LoadedModel, resolved: ResolvedSettings, device: torch.device,
                  calibration: torch.Tensor | None = None,
                  progress: ProgressSink | None = None) -> PruneResult:
    """Prune ``teacher`` to the settings' MAC target, or to their latency target
    (:func:`prune_to_latency`); with ``reconstruct``, then repair the student
    (:func:`reconstruct_result`)."""
    pr = resolved.settings.prune
    if pr.latency_target is not None:
        result = prune_to_latency(teacher, resolved, device, calibration, progress)
    else:
        result = prune_at(teacher, resolved, pr.flops_target, device, calibration, progress)
    if pr.reconstruct:
        reconstruct_result(teacher, result, resolved, progress)
    return result


def reconstruct_result(teacher: LoadedModel, result: PruneResult, resolved: ResolvedSettings,
                       progress: ProgressSink | None = None) -> None:
    """Refit the structured student of ``result`` in place by layer-wise least squares
    (:func:`~dreamprune_cli.prune.reconstruct.reconstruct_student`) on ``reconstruct_count``
    images of side ``depth_calibration_size``: patches of ``calibration`` when set, else
    synthetic degraded images of the model's task. Its report goes into
    ``result.details["reconstruction"]`` and its time into ``result.seconds``."""
    pr, seed = resolved.settings.prune, resolved.settings.common.seed
    images = None
    if pr.calibration is not None:
        images = calibration_from_dir(pr.calibration, pr.reconstruct_count,
                                      pr.depth_calibration_size, seed)
    report = reconstruct_student(teacher, result.student, images, count=pr.reconstruct_count,
                                 size=pr.depth_calibration_size, seed=seed, progress=progress)
    result.details["reconstruction"] = report.as_dict()
    result.seconds += report.seconds
    log.info("%s", report.describe())


def prune_to_latency(teacher: LoadedModel, resolved: ResolvedSettings, device: torch.device,
                     calibration: torch.Tensor | None = None,
                     progress: ProgressSink | None = None) -> PruneResult:
    """Plan on MACs, measure the student's time against the teacher's, re-plan.

    The first plan keeps ``latency_target`` of the MACs; each next one scales the MAC ratio
    reached by ``latency_target / measured ratio``, at most :data:`LATENCY_TRIES` plans. The
    first plan at or below the target is the student; if none is, the fastest measured, with
    a warning. Every try (MAC target, MAC ratio, latency ratio) is in
    ``details["latency_target"]``.
    """
    pr, seed = resolved.settings.prune, resolved.settings.common.seed
    target = pr.latency_target
    assert target is not None
    teacher_adapter = teacher.adapter().to(device)
    tries: list[dict[str, float]] = []
    best: tuple[float, PruneResult] | None = None
    flops = target
    for _ in range(LATENCY_TRIES):
        result = prune_at(teacher, resolved, flops, device, calibration, progress)
        student = result.student.adapter().to(device)
        timing = square_latency(teacher_adapter, student, pr.flops_size, device, seed)
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
                                        "size": pr.flops_size, "device": str(device),
                                        "threads": torch.get_num_threads()}
    return result


def prune_at(teacher: LoadedModel, resolved: ResolvedSettings, flops_target: float,
             device: torch.device, calibration: torch.Tensor | None = None,
             progress: ProgressSink | None = None) -> PruneResult:
    """Prune ``teacher`` as the prune settings say (granularity, allocator, target, size,
    exclusions, channel multiple, adaptive calibration: ``calibration`` images, else synthetic
    ones; depth calibration: ``calibration``, else synthetic images of
    ``depth_calibration_size``)."""
    pr, seed = resolved.settings.prune, resolved.settings.common.seed
    allocator = allocator_for(resolved)
    if pr.granularity == "depth":
        return prune_depth(teacher, flops_target, flops_size=pr.flops_size,
                           calibration=calibration, calibration_count=pr.calibration_count,
                           calibration_size=pr.depth_calibration_size, seed=seed,
                           progress=progress)
    if pr.granularity == "depth+channel":
        return prune_depth_channel(teacher, flops_target, allocator,
                                   flops_size=pr.flops_size,
                                   channel_multiple=channel_multiple_for(resolved),
                                   exclude=pr.exclude, min_keep=pr.min_keep,
                                   calibration=calibration,
                                   calibration_count=pr.calibration_count,
                                   calibration_size=pr.depth_calibration_size, seed=seed,
                                   progress=progress)
    if pr.granularity == "channel":
        return prune_channels(teacher, flops_target, allocator, flops_size=pr.flops_size,
                              exclude=pr.exclude, min_keep=pr.min_keep,
                              channel_multiple=channel_multiple_for(resolved),
                              calibration=calibration,
                              calibration_count=pr.calibration_count,
                              calibration_size=pr.calibration_size, seed=seed,
                              progress=progress)
    return prune_model(teacher, flops_target, allocator, flops_size=pr.flops_size,
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
    allocator_for(resolved)
    check_latency_target(resolved)
    check_reconstruct(resolved)
    out = require(common.out, "out", ": the folder for student.safetensors, "
                                     "masks.safetensors and report.json")
    if out.exists():  # refuse a non-empty folder before any work
        ensure_output_dir(out, common.overwrite)
    images = None
    if pr.calibration is not None:
        if pr.granularity in ("depth", "depth+channel"):
            images = calibration_from_dir(pr.calibration, pr.calibration_count,
                                          pr.depth_calibration_size, common.seed)
        elif pr.allocator == "adaptive":
            images = calibration_from_dir(pr.calibration, pr.calibration_count,
                                          pr.calibration_size, common.seed)
        elif resolved.user_set("calibration") and not pr.reconstruct:
            log.warning("--calibration is only used by the adaptive allocator; ignored")
    device, _precision, _sync = runtime(common)
    teacher = load_teacher(common)
    result = prune_teacher(teacher, resolved, device, images, progress)
    files = write_prune_outputs(result, out, overwrite=common.overwrite)
    return PruneRun(result=result, out_dir=out, files=files)
