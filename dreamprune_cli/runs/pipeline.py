"""The whole chain: prune (calibrated on a short dreaming phase) -> joint dream + distill ->
evaluate teacher, pruned and distilled student on one set -> report.

Output folder::

    prune/              student.safetensors, masks.safetensors, report.json of the pruning
    checkpoint.pt       resumable state of the joint loop
    student.safetensors the distilled student (original architecture, pruned weights zero)
    masks.safetensors   its masks
    report.json, report.md, grid.png (input | teacher | pruned | student | target; with
        --prune-only input | teacher | student (pruned) | target),
    dreams.png (the last complete round's dreams | teacher | student | clean target,
                titled with the step; with --inputs synthetic, mixed or adversarial, the
                last step's synthetic inputs too, and adversarial's moved ones),
    losses.csv, losses.png
    (report.json's "latency": teacher against student forward time, interleaved pairs)
    run.json            the settings that define the run (checked on --resume) and the
                        time of its one-time phases

With ``--prune-only`` there is no joint loop: no ``checkpoint.pt``, ``losses.*`` or
``dreams.png``; ``student.safetensors`` is the pruned (and, with ``--reconstruct``, repaired)
student, scored once, and ``report.json`` gives it as both ``pruned`` and ``distilled``.
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

from dreamprune_cli.data.pairs import ImagePair
from dreamprune_cli.engine.distributed import is_writer, on_writer
from dreamprune_cli.engine.dream import dream_images
from dreamprune_cli.engine.feature_distill import check_feature_patterns
from dreamprune_cli.engine.evaluate import EvaluationResult, PairedGap, evaluate_pairs, psnr_gap
from dreamprune_cli.engine.inputs import DREAMING
from dreamprune_cli.engine.joint import (CHECKPOINT_NAME, JointResult, JointTrainer,
                                         check_resumable_steps, checkpoint_record)
from dreamprune_cli.engine.latency import PairedLatency, square_latency
from dreamprune_cli.engine.score_cache import CachedScores, teacher_scores
from dreamprune_cli.engine.training import joint_trainer, train_joint
from dreamprune_cli.errors import UsageError
from dreamprune_cli.fileio import ensure_output_dir, write_json_atomic, write_text_atomic
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.progress import NullProgress, ProgressSink
from dreamprune_cli.prune.result import REPORT_FILE, PruneResult, write_prune_outputs
from dreamprune_cli.prune.spec import PruneSpec
from dreamprune_cli.prune.student import STUDENT_FILE, load_student, save_student
from dreamprune_cli.report import ResultTable, save_loss_history
from dreamprune_cli.run_record import read_run_record, write_run_record
from dreamprune_cli.runkit.checks import check_flops_size
from dreamprune_cli.runkit.context import (TrainingContext, default_out_dir, evaluation_pairs,
                                           recorded_settings, training_context,
                                           versions)
from dreamprune_cli.runkit.estimate import EtaProgress, RunEstimate, done_steps, estimate_pipeline
from dreamprune_cli.runkit.pictures import comparison_grid, dream_grid
from dreamprune_cli.runkit.pruning import prune_teacher
from dreamprune_cli.runkit.recovery import RecoveryPlan, feature_term, resolve_recovery
from dreamprune_cli.settings import ResolvedSettings, resolve_prune_spec

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
    prune_only: bool = False  # no joint loop: the student is the pruned one

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
            "inputs": self.inputs, "prune_only": self.prune_only,
        }

    def caption(self) -> str:
        """The student's PSNR gap to its teacher and, when measured, its relative time."""
        lines = [self.student_gap.describe("student - teacher")]
        if self.latency is not None:
            lines.append(self.latency.describe())
        return "\n".join(lines)


    def table(self) -> ResultTable:
        """The three models' rows (two with ``prune_only``: the student is the pruned one):
        the command's table and ``report.md`` show these."""
        models = [("teacher", self.teacher), ("pruned (no distillation)", self.pruned)]
        if not self.prune_only:
            models.append((STUDENT_ROWS[self.inputs], self.student))
        rows = [[label, e.psnr, e.ssim, e.macs_256 / 1e9, e.params_nonzero]
                for label, e in models]
        channel = ""
        if self.granularity != "unstructured":
            channel = f", {self.granularity}" + (f" (multiple {self.channel_multiple})"
                                                 if self.channel_multiple > 1 else "")
        return ResultTable(
            f"pipeline {self.model}: {self.macs_ratio:.3f} of the MACs, {self.allocator}"
            f"{channel}, {self._training_words()}, {self.seconds:.0f} s",
            ["model", f"PSNR ({self.student.metric_space})", "SSIM", "GMACs@256", "params"],
            rows, caption=self.caption())

    def _training_words(self) -> str:
        return "no distillation (--prune-only)" if self.prune_only \
            else f"{self.joint.steps} steps"

    def tables(self) -> list[ResultTable]:
        return [self.table()]

    def markdown(self) -> str:
        """``report.md``: what ran, the table, the gap and the pictures."""
        student = self.student
        training = ("no dreaming or distillation (--prune-only): the student is the pruned "
                    "one" if self.prune_only else
                    f"{self.joint.steps} joint steps{INPUT_WORDS[self.inputs]} "
                    f"({self.joint.seconds_per_step * 1000:.0f} ms/step)")
        pictures = (f"\n![grid](grid.png)\n\nColumns of grid.png: "
                    f"{' | '.join(grid_columns(self.prune_only))}.\n")
        if not self.prune_only:
            pictures += ("\n![losses](losses.png)\n\n![dreams](dreams.png)\n\n"
                         f"dreams.png: {DREAM_GRID_ROWS[self.inputs]} | teacher output | "
                         "student output | clean target.\n")
        return (f"# dreamprune pipeline: {self.model}\n\n"
                f"MACs kept: {self.macs_ratio:.4f} of the teacher's (target "
                f"{self.flops_target}), allocator {self.allocator}, {self.granularity} "
                f"pruning, {training}, {self.seconds:.0f} s "
                f"in all on {self.device}.\n\nScores on {student.count} images, "
                f"{student.metric_space.upper()} space, SSIM {student.ssim_variant}, outputs "
                f"quantized by {student.quantization}:\n\n"
                + self.table().markdown()
                + f"\n{self.student_gap.describe('Student - teacher')}.\n"
                + (f"\n{self.latency.describe()}.\n" if self.latency else "")
                + pictures)


GRID_COLUMNS = ["input", "teacher", "pruned", "student", "target"]
PRUNE_ONLY_GRID_COLUMNS = ["input", "teacher", "student (pruned)", "target"]


def grid_columns(prune_only: bool) -> list[str]:
    """``grid.png``'s column labels: with ``prune_only`` the student is the pruned one and
    is shown once."""
    return PRUNE_ONLY_GRID_COLUMNS if prune_only else GRID_COLUMNS
GRID_ROWS = 16  # evaluation images shown in grid.png
DREAM_GRID_COLUMNS = ["dream (input)", "teacher output", "student output", "clean target"]
INPUT_GRID_COLUMNS = ["input", "teacher output", "student output", "clean target"]
STUDENT_ROWS = {"dreams": "dream + distill", "synthetic": "synthetic + distill",
                "mixed": "dream/synthetic + distill",
                "adversarial": "adversarial synthetic + distill"}
INPUT_WORDS = {"dreams": "", "synthetic": " on synthetic degraded images",
               "mixed": " on half dreams, half synthetic images",
               "adversarial": " on synthetic degraded images, half moved towards disagreement"}
DREAM_GRID_ROWS = {"dreams": "the last complete round's dreams",
                   "synthetic": "the last step's synthetic inputs",
                   "mixed": "the last complete round's dreams, then the last step's synthetic "
                            "inputs",
                   "adversarial": "the last step's synthetic inputs, then its moved ones"}


def run(resolved: ResolvedSettings, progress: ProgressSink | None = None) -> PipelineResult:
    """Prune -> dream + distill -> evaluate -> report into ``out`` (see the module doc).

    The pruning is :func:`dreamprune_cli.runkit.pruning.prune_teacher` (the adaptive allocator
    calibrated on a short dreaming phase when ``calibration_source = "dreams"``, the method;
    ``synthetic``: on degraded images of the model's task), the training
    :func:`dreamprune_cli.engine.training.train_joint`. The teacher, the pruned student before
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
    start = time.perf_counter()
    job = _check(resolved, progress or NullProgress())
    _open_folder(job)
    estimate = _estimate(job)
    teacher_eval, teacher_cache = _score_teacher(job)
    pruned = _prune_phase(job)
    trained = _Trained(None, JointResult(), 0.0) if job.prune_only \
        else _dream_distill_phase(job, pruned, estimate)
    student_eval, latency = _evaluate_phase(job, pruned)
    evaluations = _Evaluations(teacher_eval, pruned.evaluation, student_eval)
    if job.writer:  # the files and the report are rank 0's
        student_path = _save_outputs(job, pruned, trained, evaluations)
    else:
        student_path = job.out_dir / STUDENT_FILE
    result = _result(job, start, student_path, evaluations, pruned, trained, latency)
    if job.writer:
        _report(job, result, pruned.report, teacher_cache)
    return result


run_pipeline = run  # the name the package exports


@dataclass
class _Job:
    """What the phases of one pipeline run share: the settings, the checked context and
    evaluation pairs, the output folder and the time of each phase (``phases``; ``once``:
    the one-time phases, pruning and its calibration, of the session that ran them)."""

    resolved: ResolvedSettings
    progress: ProgressSink
    ctx: TrainingContext
    spec: PruneSpec
    eval_pairs: list[ImagePair]
    protocol: dict[str, Any]
    out_dir: Path
    recovery: RecoveryPlan
    phases: dict[str, float] = field(default_factory=dict)
    once: dict[str, float] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def allocator(self) -> str:
        return self.spec.allocator

    @property
    def channel_multiple(self) -> int:
        return self.spec.channel_multiple

    @property
    def resume(self) -> bool:
        return self.resolved.settings.common.resume is not None

    @property
    def prune_only(self) -> bool:
        return self.resolved.settings.pipeline.prune_only

    @property
    def steps(self) -> int:
        """The joint steps to reach (0 with ``prune_only``)."""
        return 0 if self.prune_only else self.resolved.settings.dream.joint_steps

    @property
    def writer(self) -> bool:
        """Whether this process writes the files (rank 0, or the only process)."""
        return is_writer(self.ctx.sync)

    @property
    def prune_dir(self) -> Path:
        return self.out_dir / "prune"

    @cached_property
    def generator(self) -> torch.Generator:
        """The run's one generator, shared by the calibration dreams and the joint loop."""
        return self.ctx.generator()

    @cached_property
    def teacher_adapter(self) -> torch.nn.Module:
        return self.ctx.teacher.adapter().to(self.ctx.device)

    def evaluate(self, model: torch.nn.Module, phase: str) -> EvaluationResult:
        """``model`` scored on the evaluation pairs (the first ``GRID_ROWS`` restorations
        kept for ``grid.png``), timed in ``phases[phase]``."""
        scoring: dict[str, Any] = {**self.protocol, "keep_outputs": GRID_ROWS,
                                   "sync": self.ctx.sync}
        tick = time.perf_counter()
        result = evaluate_pairs(model, self.eval_pairs, device=self.ctx.device,
                                progress=self.progress, **scoring)
        self.phases[phase] = time.perf_counter() - tick
        return result


@dataclass
class _Pruned:
    """The pruning phase's outcome: the pruned student (``adapter``: on the device, trained
    next), its scores before training, the pruning summary and whether this session pruned
    (``False``: the student of an earlier session, or rank 0's)."""

    student: LoadedModel
    adapter: torch.nn.Module
    evaluation: EvaluationResult
    report: dict[str, Any] | None
    pruned_now: bool


@dataclass
class _Trained:
    """The joint loop (for ``dreams.png``; ``None`` with ``prune_only``), its result and the
    training seconds of earlier sessions."""

    trainer: JointTrainer | None
    joint: JointResult
    trained_before: float


@dataclass
class _Evaluations:
    """The three models' scores on the evaluation pairs (``grid.png``'s columns)."""

    teacher: EvaluationResult
    pruned: EvaluationResult
    student: EvaluationResult


def _check(resolved: ResolvedSettings, progress: ProgressSink) -> _Job:
    """Everything that can fail, before any work: the pruning settings' contradictions, the
    training context (teacher, device, clean source, dream schedule, under torchrun the
    process group), the evaluation pairs and their scoring protocol, the MAC-counting size."""
    s = resolved.settings
    pr = s.prune
    spec = resolve_prune_spec(resolved)  # contradictions: refused before any work
    if s.pipeline.prune_only and resolved.user_set("steps"):
        raise UsageError(f"$steps {s.dream.steps} (from {resolved.sources['steps']}) trains "
                         f"the student, but $prune_only is on (from "
                         f"{resolved.sources.get('prune_only', 'default')}): drop $steps, or "
                         "pass --no-prune-only")
    if s.pipeline.prune_only:
        log.info("no dreaming or distillation (--prune-only from %s): the student is the pruned "
                 "one; --no-prune-only distils it", resolved.sources.get("prune_only", "default"))
    recovery = resolve_recovery(resolved)
    ctx = training_context(resolved, inputs=s.distill.inputs)
    teacher = ctx.teacher
    check_feature_patterns(teacher.network, recovery.features)  # before pruning
    eval_pairs, protocol = evaluation_pairs(teacher, resolved, s.pipeline.eval_input_dir,
                                            s.pipeline.eval_target_dir,
                                            ("eval_input_dir", "eval_target_dir"),
                                            limit=s.evaluate.limit)
    check_flops_size(teacher, pr.flops_size)
    out_dir = s.common.resume or s.common.out or default_out_dir(teacher.name)
    return _Job(resolved=resolved, progress=progress, ctx=ctx, spec=spec, eval_pairs=eval_pairs,
                protocol=protocol, out_dir=Path(out_dir), recovery=recovery)


def _open_folder(job: _Job) -> None:
    """The output folder: created (or, on resume, checked: written by this command, its
    checkpoint resumable to ``steps``), and ``run.json`` written with the defining settings
    and, on resume, the one-time phases of the first session."""
    s, sync = job.resolved.settings, job.ctx.sync
    job.out_dir = on_writer(sync, lambda: ensure_output_dir(job.out_dir, s.common.overwrite,
                                                            job.resume))
    earlier = read_run_record(job.out_dir, "pipeline") if job.resume else None
    job.once = dict(earlier.phases) if earlier is not None else {}  # prune phases of session 1
    # the steps setting itself (not 0 with prune_only): a resume carries it as a valid value
    job.record = recorded_settings("pipeline", job.resolved, s.dream.joint_steps)
    if job.resume and not job.prune_only:
        dream_init = job.ctx.schedule.dream_init if s.distill.inputs in DREAMING else None
        check_resumable_steps(job.out_dir / CHECKPOINT_NAME, job.steps, sync,
                              checkpoint_record(job.recovery.schedule, dream_init,
                                                job.recovery.features, job.recovery.adversarial))
    if job.writer:
        write_run_record(job.out_dir, "pipeline", job.record, job.once)


def _estimate(job: _Job) -> RunEstimate | None:
    """The run's time, estimated on throwaway copies and logged (``None`` under torchrun,
    where the ranks would wait, and with ``prune_only``)."""
    if job.ctx.sync is not None or job.prune_only:
        return None
    s = job.resolved.settings
    calibrate = job.allocator == "adaptive" and s.pipeline.calibration_source == "dreams" \
        and not job.spec.removes_depth \
        and not (job.resume and (job.prune_dir / STUDENT_FILE).is_file())
    estimate = estimate_pipeline(
        job.resolved, job.ctx, job.teacher_adapter, job.eval_pairs, job.protocol,
        job.steps - (done_steps(job.out_dir / CHECKPOINT_NAME) if job.resume else 0),
        calibrate)
    log.info("%s", estimate.describe())
    return estimate


def _score_teacher(job: _Job) -> tuple[EvaluationResult, CachedScores]:
    """The teacher's scores: from the cache of teacher scores when an entry fits (real
    evaluation folders only), else evaluated (phase ``evaluate_teacher``)."""
    s, teacher = job.resolved.settings, job.ctx.teacher
    return teacher_scores(
        lambda: job.evaluate(job.teacher_adapter, "evaluate_teacher"), job.teacher_adapter,
        teacher.weights, teacher.name, teacher.config, job.eval_pairs, job.protocol,
        s.evaluate.limit, job.ctx.device,
        enabled=s.pipeline.teacher_cache and s.pipeline.eval_input_dir is not None,
        writer=job.writer, keep_outputs=GRID_ROWS)


def _prune_phase(job: _Job) -> _Pruned:
    """The pruned student, scored before any training: the one in ``prune/`` on resume (and,
    under torchrun, on the ranks other than 0, once rank 0 has written it), else the teacher
    pruned now (the adaptive allocator calibrated on a short dreaming phase with
    ``calibration_source = "dreams"``) and written to ``prune/``, with the one-time phases
    recorded in ``run.json``."""
    s = job.resolved.settings
    ctx, phases, prune_dir = job.ctx, job.phases, job.prune_dir
    teacher, device, sync = ctx.teacher, ctx.device, ctx.sync
    prune_report: dict[str, Any] | None = None
    pruned: PruneResult | None = None
    follower = not job.writer
    if sync is not None and follower:  # rank 0 prunes (or finds the pruned student) first
        sync.barrier()
    if (job.resume or follower) and (prune_dir / STUDENT_FILE).is_file():
        log.info("resuming: reusing the pruned student in %s", prune_dir)
        student = load_student(prune_dir / STUDENT_FILE, teacher.name)
        prune_report = _read_prune_report(prune_dir / REPORT_FILE)
    else:
        if job.resume:
            log.info("resuming: %s holds no pruned student yet; pruning", job.out_dir)
        calibration = None  # pruning then uses synthetic images of the model's task
        if job.allocator == "adaptive" and s.pipeline.calibration_source == "dreams" \
                and not job.spec.removes_depth:  # depth: full-size images
            tick = time.perf_counter()
            calibration = dream_images(job.teacher_adapter, ctx.clean_source,
                                       ctx.schedule.batch_size, s.pipeline.calibration_steps,
                                       ctx.schedule, job.generator, device, ctx.precision,
                                       job.progress).dreams
            phases["calibration_dreams"] = time.perf_counter() - tick
        tick = time.perf_counter()
        pruned = prune_teacher(teacher, job.spec, device, calibration, job.progress)
        write_prune_outputs(pruned, prune_dir, overwrite=True)
        phases["prune"] = time.perf_counter() - tick
        job.once = {k: phases[k] for k in ("calibration_dreams", "prune") if k in phases}
        write_run_record(job.out_dir, "pipeline", job.record, job.once)
        student = pruned.student
        prune_report = pruned.as_dict(layers=False)
    if sync is not None and sync.is_writer:
        sync.barrier()  # prune/ is written: the other ranks load it
    student.network.to(device)
    student_adapter = student.adapter().to(device)
    pruned_eval = job.evaluate(copy.deepcopy(student_adapter), "evaluate_pruned")
    return _Pruned(student=student, adapter=student_adapter, evaluation=pruned_eval,
                   report=prune_report, pruned_now=pruned is not None)


def _dream_distill_phase(job: _Job, pruned: _Pruned, estimate: RunEstimate | None
                         ) -> _Trained:
    """The joint dream + distill loop on the pruned student, to ``steps`` (checkpointed,
    resumed from ``checkpoint.pt``; the progress line with the run's ``eta`` when
    estimated); phase ``dream_distill`` is every session's training time."""
    s, ctx, progress = job.resolved.settings, job.ctx, job.progress
    trainer = joint_trainer(job.teacher_adapter, pruned.adapter, ctx.clean_source, ctx.schedule,
                            s.dream.round_steps, s.distill.student_lr, s.distill.lambda_kd,
                            job.generator, ctx.device, ctx.precision, sync=ctx.sync,
                            inputs=s.distill.inputs, student_plan=job.recovery.schedule,
                            features=feature_term(job.recovery.features, ctx.teacher,
                                                  pruned.student, job.teacher_adapter),
                            adversarial=job.recovery.adversarial)
    joint, trained_before = train_joint(
        trainer, job.out_dir, job.steps, s.distill.checkpoint_every, job.resume,
        progress if estimate is None else EtaProgress(progress, trainer.inputs.phase,
                                                      estimate.evaluation_after))
    job.phases["dream_distill"] = joint.seconds  # every session's training time
    return _Trained(trainer=trainer, joint=joint, trained_before=trained_before)


def _evaluate_phase(job: _Job, pruned: _Pruned) -> tuple[EvaluationResult,
                                                         PairedLatency | None]:
    """The distilled student's scores and, on rank 0, its forward time against the
    teacher's at the MAC-counting size."""
    s, ctx = job.resolved.settings, job.ctx
    student_eval = pruned.evaluation if job.prune_only \
        else job.evaluate(pruned.adapter, "evaluate_student")
    latency = None if not job.writer else measure_latency(
        job.teacher_adapter, pruned.adapter, s.prune.flops_size, ctx.device, s.common.seed,
        job.phases)
    return student_eval, latency


def _save_outputs(job: _Job, pruned: _Pruned, trained: _Trained,
                  evaluations: _Evaluations) -> Path:
    """Rank 0's files besides the report: the distilled student (its file's path returned),
    the loss history, ``grid.png`` and ``dreams.png``."""
    s, pr, device = job.resolved.settings, job.resolved.settings.prune, job.ctx.device
    joint, out_dir = trained.joint, job.out_dir
    extra = {"dreamprune.pipeline.flops_target": repr(pr.flops_target),
             "dreamprune.pipeline.allocator": job.allocator,
             "dreamprune.pipeline.granularity": job.spec.granularity,
             "dreamprune.pipeline.steps": str(joint.steps)}
    if job.spec.removes_channels:
        extra["dreamprune.pipeline.channel_multiple"] = str(job.channel_multiple)
    student_path = save_student(pruned.student, out_dir, extra)
    shown = [evaluations.teacher, evaluations.student] if job.prune_only \
        else [evaluations.teacher, evaluations.pruned, evaluations.student]
    comparison_grid(out_dir / "grid.png", job.eval_pairs, shown, grid_columns(job.prune_only),
                    crop=s.pipeline.grid_crop)
    if trained.trainer is None:  # prune_only: no loss history, no inputs to show
        return student_path
    save_loss_history(out_dir, joint.history, f"joint {STUDENT_ROWS[s.distill.inputs]}")
    dream_grid(out_dir / "dreams.png", trained.trainer.inputs, job.teacher_adapter,
               pruned.adapter, joint.steps, s.dream.round_steps, device,
               DREAM_GRID_COLUMNS if s.distill.inputs == "dreams" else INPUT_GRID_COLUMNS)
    return student_path


def _result(job: _Job, start: float, student_path: Path, evaluations: _Evaluations,
            pruned: _Pruned, trained: _Trained, latency: PairedLatency | None
            ) -> PipelineResult:
    """The run's result, built once. On rank 0 its time is the whole run's: this session,
    plus the pruning (when an earlier session did it) and the training of earlier sessions;
    the other ranks count this session only."""
    s, pr = job.resolved.settings, job.resolved.settings.prune
    for name, seconds in job.once.items():  # one-time phases of the first session, on resume
        job.phases.setdefault(name, seconds)
    teacher_eval, student_eval = evaluations.teacher, evaluations.student
    macs_ratio = student_eval.macs_256 / teacher_eval.macs_256 if teacher_eval.macs_256 else 1.0
    earlier_seconds = 0.0
    if job.writer:
        earlier_seconds = trained.trained_before + (sum(job.once.values())
                                                    if not pruned.pruned_now else 0.0)
    return PipelineResult(out_dir=job.out_dir, student_path=student_path,
                          macs_ratio=macs_ratio, teacher=teacher_eval,
                          pruned=evaluations.pruned, student=student_eval, joint=trained.joint,
                          seconds=time.perf_counter() - start + earlier_seconds,
                          phases=job.phases, model=job.ctx.teacher.name,
                          allocator=job.allocator, granularity=job.spec.granularity,
                          channel_multiple=job.channel_multiple, flops_target=pr.flops_target,
                          device=str(job.ctx.device), latency=latency, inputs=s.distill.inputs,
                          prune_only=job.prune_only)


def _report(job: _Job, result: PipelineResult, prune_report: dict[str, Any] | None,
            teacher_cache: CachedScores) -> None:
    """``report.json`` (the result's summary, the settings, the three evaluations, the
    pruning, the teacher scores' cache, the latency) and ``report.md``."""
    s, pr = job.resolved.settings, job.resolved.settings.prune
    latency = result.latency
    report = {**result.summary(), "model": result.model, "allocator": job.allocator,
              "granularity": job.spec.granularity, "channel_multiple": job.channel_multiple,
              "flops_target": pr.flops_target, "flops_size": pr.flops_size,
              "seed": s.common.seed, "device": result.device, "versions": versions(),
              "settings": job.resolved.flat(), "teacher": result.teacher.as_dict(),
              "pruned": result.pruned.as_dict(), "distilled": result.student.as_dict(),
              "prune": prune_report, "resumed": job.resume,
              "teacher_scores_cache": teacher_cache.as_dict(),
              "latency": latency.as_dict() if latency else None}
    write_json_atomic(job.out_dir / "report.json", report, overwrite=True)
    write_text_atomic(job.out_dir / "report.md", result.markdown(), overwrite=True)

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
