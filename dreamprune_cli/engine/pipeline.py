"""The whole chain: prune (calibrated on a short dreaming phase) -> joint dream + distill ->
evaluate teacher, pruned and distilled student on one set -> report.

Output folder::

    prune/              student.safetensors, masks.safetensors, report.json of the pruning
    checkpoint.pt       resumable state of the joint loop
    student.safetensors the distilled student (original architecture, pruned weights zero)
    masks.safetensors   its masks
    report.json, report.md, grid.png (input | teacher | pruned | student | target),
    dreams.png (the last round's dreams | teacher | student | clean target),
    losses.csv, losses.png
    run.json            the settings that define the run (checked on --resume) and the
                        time of its one-time phases
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli.data.clean import CleanSource
from dreamprune_cli.data.pairs import ImagePair, read_pair
from dreamprune_cli.engine.channel_prune import prune_channels
from dreamprune_cli.engine.device import Precision
from dreamprune_cli.engine.distill import Distiller, load_student, save_student
from dreamprune_cli.engine.distributed import RankSync, is_writer, on_writer, rank_seed
from dreamprune_cli.engine.dream import Dreamer, DreamSchedule, dream_images
from dreamprune_cli.engine.dream_files import versions
from dreamprune_cli.engine.evaluate import (EvaluationResult, PairedGap, evaluate_pairs,
                                            psnr_gap)
from dreamprune_cli.engine.joint import (CHECKPOINT_NAME, JointResult, JointTrainer,
                                         check_resumable_steps)
from dreamprune_cli.engine.prune import (REPORT_FILE, PruneResult, prune_model,
                                         write_prune_outputs)
from dreamprune_cli.engine.tiling import Tiling
from dreamprune_cli.fileio import ensure_output_dir, write_json_atomic, write_text_atomic
from dreamprune_cli.metrics import Quantization, SsimVariant
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.prune.drift import DEFAULT_MIN_KEEP
from dreamprune_cli.progress import NullProgress, ProgressSink
from dreamprune_cli.report import markdown_table, save_grid, save_loss_history
from dreamprune_cli.run_record import read_run_record, write_run_record

log = logging.getLogger(__name__)


@dataclass
class PipelineResult:
    out_dir: Path
    student_path: Path
    macs_ratio: float
    teacher: EvaluationResult
    pruned: EvaluationResult
    student: EvaluationResult
    joint: JointResult
    seconds: float
    phases: dict[str, float] = field(default_factory=dict)

    @cached_property
    def student_gap(self) -> PairedGap:
        """Student minus teacher, per image, with its paired standard error."""
        return psnr_gap(self.student, self.teacher)

    def summary(self) -> dict[str, Any]:
        gap = self.student_gap
        return {
            "student": self.student_path, "out": self.out_dir, "macs_ratio": self.macs_ratio,
            "psnr_teacher": self.teacher.psnr, "psnr_pruned": self.pruned.psnr,
            "psnr_student": self.student.psnr,
            "psnr_student_minus_teacher": gap.mean,
            "psnr_student_minus_teacher_se": gap.standard_error,
            "ssim_teacher": self.teacher.ssim, "ssim_pruned": self.pruned.ssim,
            "ssim_student": self.student.ssim,
            "macs_teacher_256": self.teacher.macs_256, "macs_student_256": self.student.macs_256,
            "params_teacher": self.teacher.params_nonzero,
            "params_student": self.student.params_nonzero,
            "steps": self.joint.steps, "seconds_per_step": self.joint.seconds_per_step,
            "seconds": self.seconds, "phases": self.phases,
            "metric_space": self.student.metric_space,
            "ssim_variant": self.student.ssim_variant,
            "quantization": self.student.quantization, "eval_count": self.student.count,
        }


GRID_COLUMNS = ["input", "teacher", "pruned", "student", "target"]
GRID_ROWS = 16  # evaluation images shown in grid.png
DREAM_GRID_COLUMNS = ["dream (input)", "teacher output", "student output", "clean target"]


def _comparison_grid(path: Path, pairs: list[ImagePair],
                     evaluations: list[EvaluationResult]) -> None:
    """``grid.png``: one row per evaluation image kept by the evaluations (the first
    :data:`GRID_ROWS`), labelled columns input | teacher | pruned | student | target."""
    rows = min(len(evaluation.outputs) for evaluation in evaluations)
    images = []
    for index, pair in enumerate(pairs[:rows]):
        degraded, target = read_pair(pair)
        images.append([degraded] + [e.outputs[index] for e in evaluations] + [target])
    save_grid(path, images, overwrite=True, column_labels=GRID_COLUMNS,
              row_labels=[pair.name for pair in pairs[:rows]])


def _dream_grid(path: Path, dreamer: Dreamer, teacher: torch.nn.Module,
                student: torch.nn.Module) -> None:
    """``dreams.png``: the last round's dreams, what teacher and student make of them, and
    their clean targets (one row per dream of the batch)."""
    dreams = dreamer.dreams.detach().float()
    if dreams.numel() == 0:
        return
    with torch.inference_mode():
        restored_t = teacher(dreams).float().clamp(0, 1).cpu()
        restored_s = student(dreams).float().clamp(0, 1).cpu()
    dreams, clean = dreams.cpu(), dreamer.clean.float().cpu()
    rows = [[dreams[i], restored_t[i], restored_s[i], clean[i]] for i in range(dreams.shape[0])]
    save_grid(path, rows, overwrite=True, column_labels=DREAM_GRID_COLUMNS,
              row_labels=[f"dream {i + 1}" for i in range(len(rows))])


def run_pipeline(teacher: LoadedModel, *, flops_target: float, allocator: str,
                 flops_size: int, exclude: list[str], clean_source: CleanSource,
                 schedule: DreamSchedule, steps: int, round_steps: int, student_lr: float,
                 lambda_kd: float, calibration_steps: int, eval_pairs: list[ImagePair],
                 calibration_source: str = "dreams", min_keep: float = DEFAULT_MIN_KEEP,
                 granularity: str = "unstructured",
                 metric_space: str, crop_border: int, out_dir: Path, device: torch.device,
                 precision: Precision, seed: int, checkpoint_every: int = 100,
                 resume: bool = False, overwrite: bool = False,
                 settings: dict[str, Any] | None = None,
                 run_record: dict[str, Any] | None = None,
                 progress: ProgressSink | None = None, ssim_variant: SsimVariant = "basicsr",
                 quantization: Quantization = "round",
                 tiling: Tiling | None = None,
                 sync: RankSync | None = None) -> PipelineResult:
    """Run prune -> dream + distill -> evaluate -> report into ``out_dir`` (see module doc).

    ``calibration_source``: ``dreams`` calibrates the adaptive allocator on a short dreaming
    phase (the method); ``synthetic`` on degraded images from dreamprune's synthesizers for
    the model's task (measured better on the bundled FFA teacher, see docs/RESULTS.md).
    ``run_record``: the defining settings to write into ``run.json``
    (:func:`dreamprune_cli.run_record.record_settings`); the caller checks them against the
    folder's record before a resume. With ``resume``, the report covers the whole run: the
    pruning of the first session, and the training time of every session.
    ``metric_space``, ``crop_border``, ``ssim_variant``, ``quantization`` and ``tiling`` are
    :func:`evaluate_pairs`'s, for all three evaluations.
    ``granularity="channel"`` removes whole channels instead of masking weights
    (:func:`~dreamprune_cli.engine.channel_prune.prune_channels`; allocators ``uniform``,
    ``global``, ``lamp``); the thinner student is distilled on the outputs alike.
    ``sync``: one of several processes (:mod:`dreamprune_cli.engine.distributed`): rank 0
    prunes and writes every file, the others load its pruned student; dreaming, distillation
    and the evaluations are shared.
    """
    progress = progress or NullProgress()
    start = time.perf_counter()
    phases: dict[str, float] = {}
    out_dir = on_writer(sync, lambda: ensure_output_dir(Path(out_dir), overwrite, resume))
    earlier = read_run_record(out_dir, "pipeline") if resume else None
    once = dict(earlier.phases) if earlier is not None else {}  # prune phases of session 1
    record = dict(run_record) if run_record is not None else \
        (dict(earlier.settings) if earlier is not None else None)
    prune_dir = out_dir / "prune"
    checkpoint = out_dir / CHECKPOINT_NAME
    if resume:
        check_resumable_steps(checkpoint, steps, sync)
    if record is not None and is_writer(sync):
        write_run_record(out_dir, "pipeline", record, once)
    generator = torch.Generator().manual_seed(rank_seed(seed, sync))
    teacher_adapter = teacher.adapter().to(device)
    scoring: dict[str, Any] = dict(ssim_variant=ssim_variant, quantization=quantization,
                                   tiling=tiling, keep_outputs=GRID_ROWS, sync=sync)

    tick = time.perf_counter()
    teacher_eval = evaluate_pairs(teacher_adapter, eval_pairs, metric_space, crop_border, device,
                                  progress=progress, **scoring)
    phases["evaluate_teacher"] = time.perf_counter() - tick

    prune_report: dict[str, Any] | None = None
    follower = not is_writer(sync)
    if follower:  # rank 0 prunes (or finds the pruned student) and writes it first
        sync.barrier()  # type: ignore[union-attr]
    if (resume or follower) and (prune_dir / "student.safetensors").is_file():
        log.info("resuming: reusing the pruned student in %s", prune_dir)
        student = load_student(prune_dir / "student.safetensors", teacher.name)
        pruned: PruneResult | None = None
        prune_report = _read_prune_report(prune_dir / REPORT_FILE)
    else:
        if resume:
            log.info("resuming: %s holds no pruned student yet; pruning", out_dir)
        calibration = None  # prune_model then uses synthetic images of the model's task
        if allocator == "adaptive" and calibration_source == "dreams" \
                and granularity == "unstructured":
            tick = time.perf_counter()
            calib = dream_images(teacher_adapter, clean_source, schedule.batch_size,
                                 calibration_steps, schedule, generator, device, precision,
                                 progress)
            calibration = calib.dreams
            phases["calibration_dreams"] = time.perf_counter() - tick
        tick = time.perf_counter()
        if granularity == "channel":
            pruned = prune_channels(teacher, flops_target, allocator, flops_size, exclude,
                                    min_keep=min_keep)
        else:
            pruned = prune_model(teacher, flops_target, allocator, flops_size, exclude,
                                 calibration=calibration, device=device, seed=seed,
                                 min_keep=min_keep, progress=progress)
        write_prune_outputs(pruned, prune_dir, overwrite=True)
        phases["prune"] = time.perf_counter() - tick
        once = {k: phases[k] for k in ("calibration_dreams", "prune") if k in phases}
        if record is not None:
            write_run_record(out_dir, "pipeline", record, once)
        student = pruned.student
        prune_report = pruned.as_dict(layers=False)
    if sync is not None and sync.is_writer:
        sync.barrier()  # prune/ is written: the other ranks load it
    student.network.to(device)
    student_adapter = student.adapter().to(device)
    pruned_snapshot = copy.deepcopy(student_adapter)

    tick = time.perf_counter()
    pruned_eval = evaluate_pairs(pruned_snapshot, eval_pairs, metric_space, crop_border, device,
                                 progress=progress, **scoring)
    phases["evaluate_pruned"] = time.perf_counter() - tick

    dreamer = Dreamer(teacher_adapter, clean_source, schedule, generator, device, precision,
                      sync)
    distiller = Distiller(student_adapter, student_lr, lambda_kd, device, precision, sync)
    trainer = JointTrainer(dreamer, distiller, round_steps, generator, sync)
    if resume and checkpoint.is_file():
        trainer.load(checkpoint)
    trained_before = trainer.seconds
    joint = trainer.run(steps, checkpoint, checkpoint_every, progress)
    phases["dream_distill"] = joint.seconds  # every session's training time

    tick = time.perf_counter()
    student_eval = evaluate_pairs(student_adapter, eval_pairs, metric_space, crop_border, device,
                                  progress=progress, **scoring)
    phases["evaluate_student"] = time.perf_counter() - tick

    for name, seconds in once.items():  # one-time phases of the first session, on resume
        phases.setdefault(name, seconds)
    macs_ratio = student_eval.macs_256 / teacher_eval.macs_256 if teacher_eval.macs_256 else 1.0
    if follower:  # the files and the report are rank 0's
        return PipelineResult(out_dir=out_dir, student_path=out_dir / "student.safetensors",
                              macs_ratio=macs_ratio, teacher=teacher_eval, pruned=pruned_eval,
                              student=student_eval, joint=joint,
                              seconds=time.perf_counter() - start, phases=phases)
    extra = {"dreamprune.pipeline.flops_target": repr(flops_target),
             "dreamprune.pipeline.allocator": allocator,
             "dreamprune.pipeline.granularity": granularity,
             "dreamprune.pipeline.steps": str(joint.steps)}
    student_path = save_student(student, out_dir, extra)
    save_loss_history(out_dir, joint.history, "joint dream + distill")
    _comparison_grid(out_dir / "grid.png", eval_pairs, [teacher_eval, pruned_eval, student_eval])
    _dream_grid(out_dir / "dreams.png", dreamer, teacher_adapter, student_adapter)

    # the whole run: this session, plus the pruning and training of earlier sessions
    earlier_seconds = trained_before + (sum(once.values()) if pruned is None else 0.0)
    result = PipelineResult(out_dir=out_dir, student_path=student_path, macs_ratio=macs_ratio,
                            teacher=teacher_eval, pruned=pruned_eval, student=student_eval,
                            joint=joint, seconds=time.perf_counter() - start + earlier_seconds,
                            phases=phases)
    report = {**result.summary(), "model": teacher.name, "allocator": allocator,
              "granularity": granularity,
              "flops_target": flops_target, "flops_size": flops_size, "seed": seed,
              "device": str(device), "versions": versions(), "settings": settings or {},
              "teacher": teacher_eval.as_dict(), "pruned": pruned_eval.as_dict(),
              "distilled": student_eval.as_dict(),
              "prune": prune_report, "resumed": resume}
    write_json_atomic(out_dir / "report.json", report, overwrite=True)
    rows = [["teacher", teacher_eval.psnr, teacher_eval.ssim, teacher_eval.macs_256 / 1e9,
             teacher_eval.params_nonzero],
            [f"pruned ({allocator}, no distillation)", pruned_eval.psnr, pruned_eval.ssim,
             pruned_eval.macs_256 / 1e9, pruned_eval.params_nonzero],
            ["dream + distill", student_eval.psnr, student_eval.ssim,
             student_eval.macs_256 / 1e9, student_eval.params_nonzero]]
    text = (f"# dreamprune pipeline: {teacher.name}\n\n"
            f"MACs kept: {macs_ratio:.4f} of the teacher's (target {flops_target}), "
            f"allocator {allocator}, {granularity} pruning, {joint.steps} joint steps "
            f"({joint.seconds_per_step * 1000:.0f} ms/step), {result.seconds:.0f} s in all "
            f"on {device}.\n\nScores on {student_eval.count} images, "
            f"{metric_space.upper()} space, SSIM {ssim_variant}, outputs quantized by "
            f"{quantization}:\n\n"
            + markdown_table(["model", "PSNR", "SSIM", "GMACs@256", "params"], rows)
            + f"\n{result.student_gap.describe('Student - teacher')}.\n"
            + "\n![grid](grid.png)\n\nColumns of grid.png: input | teacher | pruned | "
              "student | target.\n\n![losses](losses.png)\n\n![dreams](dreams.png)\n\n"
              "dreams.png: the last round's dreams | teacher output | student output | "
              "clean target.\n")
    write_text_atomic(out_dir / "report.md", text, overwrite=True)
    return result


def _read_prune_report(path: Path) -> dict[str, Any] | None:
    """The pruning summary of an earlier session (``prune/report.json``), layers left out."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("%s: missing or unreadable; the report will not describe the pruning",
                    path)
        return None
    return {k: v for k, v in report.items() if k not in ("layers", "drift")}
