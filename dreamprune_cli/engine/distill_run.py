"""``distill`` end to end: offline on saved dreams, or online with the joint loop."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli.data.clean import CleanSource
from dreamprune_cli.data.pairs import ImagePair
from dreamprune_cli.engine.device import Precision
from dreamprune_cli.engine.distill import Distiller, distill_offline, save_student
from dreamprune_cli.engine.distributed import (RankSync, is_writer, on_writer, rank_seed,
                                               split_batch)
from dreamprune_cli.engine.dream import Dreamer, DreamSchedule
from dreamprune_cli.engine.dream_files import versions
from dreamprune_cli.engine.evaluate import PairedGap, evaluate_pairs, psnr_gap
from dreamprune_cli.engine.joint import CHECKPOINT_NAME, JointTrainer, check_resumable_steps
from dreamprune_cli.engine.tiling import Tiling
from dreamprune_cli.fileio import ensure_output_dir, write_json_atomic
from dreamprune_cli.metrics import Quantization, SsimVariant
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.progress import NullProgress, ProgressSink
from dreamprune_cli.report import save_loss_history
from dreamprune_cli.run_record import write_run_record


@dataclass
class DistillOutcome:
    student_path: Path
    metrics: dict[str, Any]
    gap: PairedGap


def run_distill(teacher: LoadedModel, student: LoadedModel, out_dir: Path, *,
                dreams: torch.Tensor | None, steps: int, schedule: DreamSchedule,
                round_steps: int, student_lr: float, lambda_kd: float,
                clean_source: CleanSource, eval_pairs: list[ImagePair], metric_space: str,
                crop_border: int, device: torch.device, precision: Precision, seed: int,
                checkpoint_every: int = 100, resume: bool = False, overwrite: bool = False,
                run_record: dict[str, Any] | None = None,
                progress: ProgressSink | None = None, ssim_variant: SsimVariant = "basicsr",
                quantization: Quantization = "round",
                tiling: Tiling | None = None, sync: RankSync | None = None) -> DistillOutcome:
    """Distill ``student`` (masked) onto ``teacher`` and write it with its metrics.

    ``dreams`` given: offline, random minibatches of the saved dreams (no checkpoints; the
    run is short). Otherwise online: the joint dream + distill loop, checkpointed in
    ``out_dir/checkpoint.pt`` and resumable. ``run_record``: the defining settings written
    to ``out_dir/run.json`` (checked by the caller against the folder's record on resume).
    ``metric_space``, ``crop_border``, ``ssim_variant``, ``quantization`` and ``tiling`` are
    :func:`evaluate_pairs`'s. ``sync``: one of several processes
    (:mod:`dreamprune_cli.engine.distributed`); offline, each rank draws ``batch_size / N``
    of each minibatch; rank 0 writes the files.
    """
    progress = progress or NullProgress()
    start = time.perf_counter()
    out_dir = on_writer(sync, lambda: ensure_output_dir(Path(out_dir), overwrite, resume))
    if resume and dreams is None:
        check_resumable_steps(out_dir / CHECKPOINT_NAME, steps, sync)
    if run_record is not None and is_writer(sync):
        write_run_record(out_dir, "distill", run_record)
    generator = torch.Generator().manual_seed(rank_seed(seed, sync))
    teacher_adapter = teacher.adapter().to(device)
    student.network.to(device)
    distiller = Distiller(student.adapter().to(device), student_lr, lambda_kd, device,
                          precision, sync)
    if dreams is not None:
        result = distill_offline(distiller, teacher_adapter, dreams, steps,
                                 split_batch(schedule.batch_size, sync), generator, progress)
        history, mode, per_step = result.history, "offline", None
    else:
        dreamer = Dreamer(teacher_adapter, clean_source, schedule, generator, device, precision,
                          sync)
        trainer = JointTrainer(dreamer, distiller, round_steps, generator, sync)
        checkpoint = out_dir / CHECKPOINT_NAME
        if resume and checkpoint.is_file():  # none: stopped before its first checkpoint
            trainer.load(checkpoint)
        joint = trainer.run(steps, checkpoint, checkpoint_every, progress)
        history, mode, per_step = joint.history, "online", joint.seconds_per_step
    path = on_writer(sync, lambda: save_student(
        student, out_dir, extra={"dreamprune.distill.mode": mode,
                                 "dreamprune.distill.steps": str(steps)}))
    scoring: dict[str, Any] = dict(ssim_variant=ssim_variant, quantization=quantization,
                                   tiling=tiling, sync=sync)
    teacher_eval = evaluate_pairs(teacher_adapter, eval_pairs, metric_space, crop_border, device,
                                  **scoring)
    student_eval = evaluate_pairs(distiller.student, eval_pairs, metric_space, crop_border,
                                  device, **scoring)
    gap = psnr_gap(student_eval, teacher_eval)
    if not is_writer(sync):  # the files are rank 0's
        return DistillOutcome(student_path=path, metrics={}, gap=gap)
    save_loss_history(out_dir, history, f"distill ({mode})")
    metrics = {"student": path, "mode": mode, "steps": steps,
               "final_kd_loss": history[-1]["kd"] if history else None,
               "seconds_per_step": per_step, "psnr_teacher": teacher_eval.psnr,
               "psnr_student": student_eval.psnr, "psnr_student_minus_teacher": gap.mean,
               "psnr_student_minus_teacher_se": gap.standard_error,
               "ssim_teacher": teacher_eval.ssim,
               "ssim_student": student_eval.ssim, "metric_space": metric_space,
               "ssim_variant": ssim_variant, "quantization": quantization,
               "eval_count": student_eval.count, "macs_ratio":
                   student_eval.macs_256 / teacher_eval.macs_256 if teacher_eval.macs_256 else 1.0,
               "seconds": time.perf_counter() - start, "versions": versions()}
    write_json_atomic(out_dir / "metrics.json", metrics, overwrite=True)
    return DistillOutcome(student_path=path, metrics=metrics, gap=gap)
