"""The whole chain: prune (calibrated on a short dreaming phase) -> joint dream + distill ->
evaluate teacher, pruned and distilled student on one set -> report.

Output folder::

    prune/              student.safetensors, masks.safetensors, report.json of the pruning
    checkpoint.pt       resumable state of the joint loop
    student.safetensors the distilled student (original architecture, pruned weights zero)
    masks.safetensors   its masks
    report.json, report.md, grid.png (input | teacher | pruned | student | target),
    dreams.png (the last complete round's dreams | teacher | student | clean target,
                titled with the step; with --inputs synthetic or mixed, the last step's
                synthetic inputs too),
    losses.csv, losses.png
    (report.json's "latency": teacher against student forward time, interleaved pairs)
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

from dreamprune_cli.engine.distributed import is_writer, on_writer
from dreamprune_cli.engine.dream import dream_images
from dreamprune_cli.engine.feature_distill import check_feature_patterns
from dreamprune_cli.engine.evaluate import EvaluationResult, PairedGap, evaluate_pairs, psnr_gap
from dreamprune_cli.engine.joint import (CHECKPOINT_NAME, JointResult, check_resumable_steps,
                                         checkpoint_record)
from dreamprune_cli.engine.latency import PairedLatency, square_latency
from dreamprune_cli.fileio import ensure_output_dir, write_json_atomic, write_text_atomic
from dreamprune_cli.progress import NullProgress, ProgressSink
from dreamprune_cli.prune.plan import REPORT_FILE, PruneResult, write_prune_outputs
from dreamprune_cli.prune.student import STUDENT_FILE, load_student, save_student
from dreamprune_cli.report import ResultTable, save_loss_history
from dreamprune_cli.run_record import read_run_record, write_run_record
from dreamprune_cli.runs.checks import check_flops_size
from dreamprune_cli.runs.context import (default_out_dir, evaluation_pairs, recorded_settings,
                                         training_context)
from dreamprune_cli.runs.distill import (feature_settings, feature_term, joint_trainer,
                                         student_schedule, train_joint)
from dreamprune_cli.runs.dream_files import versions
from dreamprune_cli.runs.estimate import EtaProgress, done_steps, estimate_pipeline
from dreamprune_cli.runs.pictures import comparison_grid, dream_grid
from dreamprune_cli.runs.prune import (allocator_for, channel_multiple_for, check_latency_target,
                                      check_reconstruct, prune_teacher)
from dreamprune_cli.runs.score_cache import teacher_scores
from dreamprune_cli.settings import ResolvedSettings

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
    model: str = ""
    allocator: str = ""
    granularity: str = "unstructured"
    channel_multiple: int = 1
    flops_target: float = 1.0
    device: str = "cpu"
    latency: PairedLatency | None = None
    inputs: str = "dreams"  # the student's inputs in the joint loop

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
            "latency_teacher_s": self.latency.teacher_seconds if self.latency else None,
            "latency_student_s": self.latency.student_seconds if self.latency else None,
            "latency_ratio": self.latency.ratio if self.latency else None,
            "inputs": self.inputs,
        }

    def caption(self) -> str:
        """The student's PSNR gap to its teacher and, when measured, its relative time."""
        lines = [self.student_gap.describe("student - teacher")]
        if self.latency is not None:
            lines.append(self.latency.describe())
        return "\n".join(lines)


    def table(self) -> ResultTable:
        """The three models' rows: the command's table and ``report.md`` show these."""
        rows = [[label, e.psnr, e.ssim, e.macs_256 / 1e9, e.params_nonzero]
                for label, e in (("teacher", self.teacher),
                                 ("pruned (no distillation)", self.pruned),
                                 (STUDENT_ROWS[self.inputs], self.student))]
        channel = ""
        if self.granularity != "unstructured":
            channel = f", {self.granularity}" + (f" (multiple {self.channel_multiple})"
                                                 if self.channel_multiple > 1 else "")
        return ResultTable(
            f"pipeline {self.model}: {self.macs_ratio:.3f} of the MACs, {self.allocator}"
            f"{channel}, {self.joint.steps} steps, {self.seconds:.0f} s",
            ["model", f"PSNR ({self.student.metric_space})", "SSIM", "GMACs@256", "params"],
            rows, caption=self.caption())

    def tables(self) -> list[ResultTable]:
        return [self.table()]

    def markdown(self) -> str:
        """``report.md``: what ran, the table, the gap and the pictures."""
        student = self.student
        return (f"# dreamprune pipeline: {self.model}\n\n"
                f"MACs kept: {self.macs_ratio:.4f} of the teacher's (target "
                f"{self.flops_target}), allocator {self.allocator}, {self.granularity} "
                f"pruning, {self.joint.steps} joint steps{INPUT_WORDS[self.inputs]} "
                f"({self.joint.seconds_per_step * 1000:.0f} ms/step), {self.seconds:.0f} s "
                f"in all on {self.device}.\n\nScores on {student.count} images, "
                f"{student.metric_space.upper()} space, SSIM {student.ssim_variant}, outputs "
                f"quantized by {student.quantization}:\n\n"
                + self.table().markdown()
                + f"\n{self.student_gap.describe('Student - teacher')}.\n"
                + (f"\n{self.latency.describe()}.\n" if self.latency else "")
                + "\n![grid](grid.png)\n\nColumns of grid.png: input | teacher | pruned | "
                  "student | target.\n\n![losses](losses.png)\n\n![dreams](dreams.png)\n\n"
                  f"dreams.png: {DREAM_GRID_ROWS[self.inputs]} | teacher output | student "
                  "output | clean target.\n")


GRID_COLUMNS = ["input", "teacher", "pruned", "student", "target"]
GRID_ROWS = 16  # evaluation images shown in grid.png
DREAM_GRID_COLUMNS = ["dream (input)", "teacher output", "student output", "clean target"]
INPUT_GRID_COLUMNS = ["input", "teacher output", "student output", "clean target"]
STUDENT_ROWS = {"dreams": "dream + distill", "synthetic": "synthetic + distill",
                "mixed": "dream/synthetic + distill"}
INPUT_WORDS = {"dreams": "", "synthetic": " on synthetic degraded images",
               "mixed": " on half dreams, half synthetic images"}
DREAM_GRID_ROWS = {"dreams": "the last complete round's dreams",
                   "synthetic": "the last step's synthetic inputs",
                   "mixed": "the last complete round's dreams, then the last step's synthetic "
                            "inputs"}


def run(resolved: ResolvedSettings, progress: ProgressSink | None = None) -> PipelineResult:
    """Prune -> dream + distill -> evaluate -> report into ``out`` (see the module doc).

    The pruning is :func:`dreamprune_cli.runs.prune.prune_teacher` (the adaptive allocator
    calibrated on a short dreaming phase when ``calibration_source = "dreams"``, the method;
    ``synthetic``: on degraded images of the model's task), the training
    :func:`dreamprune_cli.runs.distill.train_joint`. The teacher, the pruned student before
    training and the distilled student are scored on the same pairs (``eval_input_dir`` and
    ``eval_target_dir``, else the synthetic set of the model's task). With ``resume`` the
    report covers the whole run: the pruning of the first session, and the training time of
    every session. Randomness: one generator seeded with ``seed``, shared by the calibration
    dreams and the joint loop.

    Under torchrun (the context's ``sync``, :mod:`dreamprune_cli.engine.distributed`): rank 0
    prunes and writes every file, the others wait for it and load its pruned student;
    dreaming, distillation and the evaluations are shared (each rank its own generator,
    :func:`~dreamprune_cli.engine.distributed.rank_seed`); the other ranks return the same
    scores without writing anything.

    Raises:
        UsageError: bad settings, files or sizes (before any work); on resume, a folder this
            command did not write or settings that would change the run.
    """
    progress = progress or NullProgress()
    start = time.perf_counter()
    s = resolved.settings
    pr = s.prune
    allocator = allocator_for(resolved)
    channel_multiple = channel_multiple_for(resolved)  # contradictions: before any work
    check_latency_target(resolved)
    check_reconstruct(resolved)
    plan = student_schedule(resolved)
    features = feature_settings(resolved)
    ctx = training_context(resolved, inputs=s.distill.inputs)
    teacher, device, precision, sync = ctx.teacher, ctx.device, ctx.precision, ctx.sync
    check_feature_patterns(teacher.network, features)  # before pruning
    eval_pairs, protocol = evaluation_pairs(teacher, resolved, s.pipeline.eval_input_dir,
                                            s.pipeline.eval_target_dir,
                                            ("eval_input_dir", "eval_target_dir"),
                                            limit=s.evaluate.limit)
    check_flops_size(teacher, pr.flops_size)
    resume = s.common.resume is not None
    steps = s.dream.joint_steps
    out_dir = s.common.resume or s.common.out or default_out_dir(teacher.name)

    phases: dict[str, float] = {}
    out_dir = on_writer(sync, lambda: ensure_output_dir(Path(out_dir), s.common.overwrite,
                                                         resume))
    earlier = read_run_record(out_dir, "pipeline") if resume else None
    once = dict(earlier.phases) if earlier is not None else {}  # prune phases of session 1
    record = recorded_settings("pipeline", resolved, steps)
    prune_dir = out_dir / "prune"
    if resume:
        check_resumable_steps(out_dir / CHECKPOINT_NAME, steps, sync, checkpoint_record(
            plan, None if s.distill.inputs == "synthetic" else ctx.schedule.dream_init,
            features))
    if is_writer(sync):
        write_run_record(out_dir, "pipeline", record, once)
    generator = ctx.generator()
    teacher_adapter = teacher.adapter().to(device)
    scoring: dict[str, Any] = {**protocol, "keep_outputs": GRID_ROWS, "sync": sync}
    estimate = None
    if sync is None:  # timed on throwaway copies; under torchrun the ranks would wait
        calibrate = allocator == "adaptive" and s.pipeline.calibration_source == "dreams" \
            and pr.granularity in ("unstructured", "channel") \
            and not (resume and (prune_dir / STUDENT_FILE).is_file())
        estimate = estimate_pipeline(
            resolved, ctx, teacher_adapter, eval_pairs, protocol,
            steps - (done_steps(out_dir / CHECKPOINT_NAME) if resume else 0), calibrate)
        log.info("%s", estimate.describe())

    def evaluate(model: torch.nn.Module, phase: str) -> EvaluationResult:
        tick = time.perf_counter()
        result = evaluate_pairs(model, eval_pairs, device=device, progress=progress, **scoring)
        phases[phase] = time.perf_counter() - tick
        return result

    teacher_eval, teacher_cache = teacher_scores(
        lambda: evaluate(teacher_adapter, "evaluate_teacher"), teacher_adapter, teacher.weights,
        teacher.name, teacher.config, eval_pairs, protocol, s.evaluate.limit, device,
        enabled=s.pipeline.teacher_cache and s.pipeline.eval_input_dir is not None,
        writer=is_writer(sync), keep_outputs=GRID_ROWS)

    prune_report: dict[str, Any] | None = None
    pruned: PruneResult | None = None
    follower = not is_writer(sync)
    if sync is not None and follower:  # rank 0 prunes (or finds the pruned student) first
        sync.barrier()
    if (resume or follower) and (prune_dir / STUDENT_FILE).is_file():
        log.info("resuming: reusing the pruned student in %s", prune_dir)
        student = load_student(prune_dir / STUDENT_FILE, teacher.name)
        prune_report = _read_prune_report(prune_dir / REPORT_FILE)
    else:
        if resume:
            log.info("resuming: %s holds no pruned student yet; pruning", out_dir)
        calibration = None  # pruning then uses synthetic images of the model's task
        if allocator == "adaptive" and s.pipeline.calibration_source == "dreams" \
                and pr.granularity in ("unstructured", "channel"):  # depth: full-size images
            tick = time.perf_counter()
            calibration = dream_images(teacher_adapter, ctx.clean_source,
                                       ctx.schedule.batch_size, s.pipeline.calibration_steps,
                                       ctx.schedule, generator, device, precision,
                                       progress).dreams
            phases["calibration_dreams"] = time.perf_counter() - tick
        tick = time.perf_counter()
        pruned = prune_teacher(teacher, resolved, device, calibration, progress)
        write_prune_outputs(pruned, prune_dir, overwrite=True)
        phases["prune"] = time.perf_counter() - tick
        once = {k: phases[k] for k in ("calibration_dreams", "prune") if k in phases}
        write_run_record(out_dir, "pipeline", record, once)
        student = pruned.student
        prune_report = pruned.as_dict(layers=False)
    if sync is not None and sync.is_writer:
        sync.barrier()  # prune/ is written: the other ranks load it
    student.network.to(device)
    student_adapter = student.adapter().to(device)
    pruned_eval = evaluate(copy.deepcopy(student_adapter), "evaluate_pruned")

    trainer = joint_trainer(teacher_adapter, student_adapter, ctx.clean_source, ctx.schedule,
                            s.dream.round_steps, s.distill.student_lr, s.distill.lambda_kd,
                            generator, device, precision, sync=sync,
                            inputs=s.distill.inputs, student_plan=plan,
                            features=feature_term(features, teacher, student, teacher_adapter))
    joint, trained_before = train_joint(
        trainer, out_dir, steps, s.distill.checkpoint_every, resume,
        progress if estimate is None else EtaProgress(progress, trainer.inputs.phase,
                                                      estimate.evaluation_after))
    phases["dream_distill"] = joint.seconds  # every session's training time

    student_eval = evaluate(student_adapter, "evaluate_student")
    latency = None if not is_writer(sync) else measure_latency(
        teacher_adapter, student_adapter, pr.flops_size, device, s.common.seed, phases)

    for name, seconds in once.items():  # one-time phases of the first session, on resume
        phases.setdefault(name, seconds)
    macs_ratio = student_eval.macs_256 / teacher_eval.macs_256 if teacher_eval.macs_256 else 1.0
    if follower:  # the files and the report are rank 0's
        return PipelineResult(out_dir=out_dir, student_path=out_dir / STUDENT_FILE,
                              macs_ratio=macs_ratio, teacher=teacher_eval, pruned=pruned_eval,
                              student=student_eval, joint=joint,
                              seconds=time.perf_counter() - start, phases=phases,
                              model=teacher.name, allocator=allocator,
                              granularity=pr.granularity, channel_multiple=channel_multiple,
                              flops_target=pr.flops_target,
                              device=str(device), inputs=s.distill.inputs)
    extra = {"dreamprune.pipeline.flops_target": repr(pr.flops_target),
             "dreamprune.pipeline.allocator": allocator,
             "dreamprune.pipeline.granularity": pr.granularity,
             "dreamprune.pipeline.steps": str(joint.steps)}
    if pr.granularity in ("channel", "depth+channel"):
        extra["dreamprune.pipeline.channel_multiple"] = str(channel_multiple)
    student_path = save_student(student, out_dir, extra)
    save_loss_history(out_dir, joint.history, f"joint {STUDENT_ROWS[s.distill.inputs]}")
    comparison_grid(out_dir / "grid.png", eval_pairs, [teacher_eval, pruned_eval, student_eval],
                    GRID_COLUMNS, crop=s.pipeline.grid_crop)
    dream_grid(out_dir / "dreams.png", trainer.inputs, teacher_adapter, student_adapter,
               joint.steps, s.dream.round_steps, device,
               DREAM_GRID_COLUMNS if s.distill.inputs == "dreams" else INPUT_GRID_COLUMNS)

    # the whole run: this session, plus the pruning and training of earlier sessions
    earlier_seconds = trained_before + (sum(once.values()) if pruned is None else 0.0)
    result = PipelineResult(out_dir=out_dir, student_path=student_path, macs_ratio=macs_ratio,
                            teacher=teacher_eval, pruned=pruned_eval, student=student_eval,
                            joint=joint, seconds=time.perf_counter() - start + earlier_seconds,
                            phases=phases, model=teacher.name, allocator=allocator,
                            granularity=pr.granularity, channel_multiple=channel_multiple,
                            flops_target=pr.flops_target,
                            device=str(device), latency=latency, inputs=s.distill.inputs)
    report = {**result.summary(), "model": teacher.name, "allocator": allocator,
              "granularity": pr.granularity, "channel_multiple": channel_multiple,
              "flops_target": pr.flops_target, "flops_size": pr.flops_size,
              "seed": s.common.seed, "device": str(device), "versions": versions(),
              "settings": resolved.flat(), "teacher": teacher_eval.as_dict(),
              "pruned": pruned_eval.as_dict(), "distilled": student_eval.as_dict(),
              "prune": prune_report, "resumed": resume,
              "teacher_scores_cache": teacher_cache.as_dict(),
              "latency": latency.as_dict() if latency else None}
    write_json_atomic(out_dir / "report.json", report, overwrite=True)
    write_text_atomic(out_dir / "report.md", result.markdown(), overwrite=True)
    return result


run_pipeline = run  # the name the package exports

def measure_latency(teacher: torch.nn.Module, student: torch.nn.Module, size: int,
                    device: torch.device, seed: int, phases: dict[str, float]) -> PairedLatency:
    """:func:`~dreamprune_cli.engine.latency.square_latency` of teacher and student; the
    seconds spent go to ``phases["latency"]``."""
    tick = time.perf_counter()
    timing = square_latency(teacher, student, size, device, seed)
    phases["latency"] = time.perf_counter() - tick
    log.info("%s", timing.describe())
    return timing


def _read_prune_report(path: Path) -> dict[str, Any] | None:
    """The pruning summary of an earlier session (``prune/report.json``), layers left out."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("%s: missing or unreadable; the report will not describe the pruning",
                    path)
        return None
    return {k: v for k, v in report.items() if k not in ("layers", "drift")}
