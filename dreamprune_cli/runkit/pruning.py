"""Pruning as the ``prune`` and ``pipeline`` runs do it: a :class:`~dreamprune_cli.prune.spec.PruneSpec`
planned to its MAC target (or re-planned to its latency target, timed on this machine) and
then, with ``spec.reconstruct``, repaired layer by layer.

It lives here, not in ``prune/``, because the latency target times networks with the engine
(``prune`` and ``engine`` do not import each other), and not in ``runs/``, because two
subcommands share it.
"""

from __future__ import annotations

import logging

import torch

from dreamprune_cli.data.calibration import calibration_from_dir
from dreamprune_cli.engine.latency import square_latency
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.prune.dispatch import prune_to_spec
from dreamprune_cli.prune.reconstruct import reconstruct_student
from dreamprune_cli.prune.result import PruneResult
from dreamprune_cli.prune.spec import PruneSpec

log = logging.getLogger(__name__)


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
    """Refit the student of ``result`` in place by layer-wise least squares
    (:func:`~dreamprune_cli.prune.reconstruct.reconstruct_student`) on
    ``spec.reconstruct_count`` images of side ``spec.reconstruct_size`` (ridge
    ``spec.reconstruct_ridge``): patches of
    ``spec.reconstruct_dir`` when set, else synthetic degraded images of the model's task.
    Its report goes into ``result.details["reconstruction"]`` and its time into
    ``result.seconds``."""
    images = None
    if spec.reconstruct_dir is not None:
        images = calibration_from_dir(spec.reconstruct_dir, spec.reconstruct_count,
                                      spec.reconstruct_size, spec.seed)
    report = reconstruct_student(teacher, result.student, images, count=spec.reconstruct_count,
                                 size=spec.reconstruct_size, seed=spec.seed,
                                 ridge=spec.reconstruct_ridge, progress=progress)
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
