"""``distill``: train a pruned student to match the teacher, offline on saved dreams or
online with the joint dream + distill loop (which ``runs.pipeline`` reuses); under torchrun
shared over the processes (:mod:`dreamprune_cli.engine.distributed`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli.data.clean import CleanSource
from dreamprune_cli.data.pairs import ImagePair
from dreamprune_cli.engine.distill import Distiller, StudentSchedule, distill_offline
from dreamprune_cli.engine.distributed import (RankSync, is_writer, on_writer, rank_seed,
                                               split_batch)
from dreamprune_cli.engine.dream import DreamSchedule
from dreamprune_cli.engine.evaluate import PairedGap, evaluate_pairs, psnr_gap
from dreamprune_cli.engine.feature_distill import FeatureSettings
from dreamprune_cli.engine.inputs import DREAMING, AdversarialSettings
from dreamprune_cli.engine.joint import CHECKPOINT_NAME, check_resumable_steps, checkpoint_record
from dreamprune_cli.engine.runtime import Precision
from dreamprune_cli.engine.tiling import Tiling
from dreamprune_cli.engine.training import joint_trainer, train_joint
from dreamprune_cli.fileio import ensure_output_dir, write_json_atomic
from dreamprune_cli.metrics import Quantization, SsimVariant
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.progress import NullProgress, ProgressSink
from dreamprune_cli.prune.student import load_student, save_student
from dreamprune_cli.report import ResultTable, save_loss_history
from dreamprune_cli.run_record import write_run_record
from dreamprune_cli.runkit.checks import check_offline_inputs
from dreamprune_cli.runkit.context import (evaluation_pairs, recorded_settings, require,
                                           training_context, versions)
from dreamprune_cli.runkit.dream_files import read_dreams
from dreamprune_cli.runkit.recovery import feature_term, resolve_recovery
from dreamprune_cli.settings import ResolvedSettings


@dataclass
class DistillOutcome:
    """The distilled student's file, its metrics (``metrics.json``, the ``--json`` object)
    and its paired PSNR gap to the teacher."""

    student_path: Path
    metrics: dict[str, Any]
    gap: PairedGap
    out_dir: Path
    model: str = ""

    def summary(self) -> dict[str, Any]:
        return self.metrics

    def tables(self) -> list[ResultTable]:
        m = self.metrics
        return [ResultTable(f"distill {self.model} ({m['mode']})",
                            ["steps", "final L_KD", "PSNR teacher", "PSNR student", "MACs kept",
                             "student"],
                            [[m["steps"], m["final_kd_loss"], m["psnr_teacher"],
                              m["psnr_student"], m["macs_ratio"], self.student_path]],
                            caption=self.gap.describe("student - teacher"))]


def run_distill(teacher: LoadedModel, student: LoadedModel, out_dir: Path, *,
                dreams: torch.Tensor | None, steps: int, schedule: DreamSchedule,
                round_steps: int, student_lr: float, lambda_kd: float,
                clean_source: CleanSource, eval_pairs: list[ImagePair], metric_space: str,
                crop_border: int, device: torch.device, precision: Precision, seed: int,
                checkpoint_every: int = 100, resume: bool = False, overwrite: bool = False,
                run_record: dict[str, Any] | None = None,
                progress: ProgressSink | None = None, ssim_variant: SsimVariant = "basicsr",
                quantization: Quantization = "round",
                tiling: Tiling | None = None, sync: RankSync | None = None,
                inputs: str = "dreams",
                student_plan: StudentSchedule | None = None,
                features: FeatureSettings | None = None,
                adversarial: AdversarialSettings | None = None) -> DistillOutcome:
    """Distill ``student`` (masked) onto ``teacher`` and write it with its metrics.

    ``dreams`` given: offline, random minibatches of the saved dreams (no checkpoints; the
    run is short). Otherwise online: the joint loop on ``inputs`` (``dreams``, ``synthetic``,
    ``mixed`` or ``adversarial``, whose search ``adversarial`` sets:
    :mod:`dreamprune_cli.engine.inputs`), checkpointed in
    ``out_dir/checkpoint.pt`` and resumable. ``run_record``: the defining settings written
    to ``out_dir/run.json`` (checked by the caller against the folder's record on resume).
    ``metric_space``, ``crop_border``, ``ssim_variant``, ``quantization`` and ``tiling`` are
    :func:`evaluate_pairs`'s. ``sync``: one of several processes
    (:mod:`dreamprune_cli.engine.distributed`; each rank seeds its generator with
    :func:`~dreamprune_cli.engine.distributed.rank_seed`); offline, each rank draws
    ``batch_size / N`` of each minibatch; rank 0 writes the files, and the other ranks
    return an outcome without metrics. ``student_plan``: the student's learning-rate schedule
    and weight averaging over ``steps`` (``None``: constant rate, no averaging); with
    averaging, the average is the student written and scored. ``features``: the feature
    term's settings (``None`` or ``lambda_feat`` 0: off); offline, the teacher then runs on
    each minibatch (:func:`~dreamprune_cli.engine.distill.distill_offline`).
    """
    check_offline_inputs(dreams is not None, inputs)
    progress = progress or NullProgress()
    start = time.perf_counter()
    teacher_adapter = teacher.adapter().to(device)
    term = feature_term(features, teacher, student, teacher_adapter)  # checked before work
    out_dir = on_writer(sync, lambda: ensure_output_dir(Path(out_dir), overwrite, resume))
    if resume and dreams is None:
        check_resumable_steps(out_dir / CHECKPOINT_NAME, steps, sync, checkpoint_record(
            student_plan or StudentSchedule(total_steps=steps),
            schedule.dream_init if inputs in DREAMING else None, features, adversarial))
    if run_record is not None and is_writer(sync):
        write_run_record(out_dir, "distill", run_record)
    generator = torch.Generator().manual_seed(rank_seed(seed, sync))
    student.network.to(device)
    student_adapter = student.adapter().to(device)
    if dreams is not None:
        distiller = Distiller(student_adapter, student_lr, lambda_kd, device, precision, sync,
                              schedule=student_plan, features=term)
        result = distill_offline(distiller, teacher_adapter, dreams, steps,
                                 split_batch(schedule.batch_size, sync), generator, progress)
        distiller.adopt_average()
        history, mode, per_step = result.history, "offline", None
    else:
        trainer = joint_trainer(teacher_adapter, student_adapter, clean_source, schedule,
                                round_steps, student_lr, lambda_kd, generator, device,
                                precision, sync=sync, inputs=inputs, student_plan=student_plan,
                                features=term, adversarial=adversarial)
        distiller = trainer.distiller
        joint, _ = train_joint(trainer, out_dir, steps, checkpoint_every, resume,
                               progress)
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
        return DistillOutcome(student_path=path, metrics={}, gap=gap, out_dir=out_dir,
                              model=teacher.name)
    save_loss_history(out_dir, history, f"distill ({mode}, {inputs})")
    metrics = {"student": path, "mode": mode, "inputs": inputs, "steps": steps,
               "final_kd_loss": history[-1]["kd"] if history else None,
               **({"lambda_feat": term.lambda_feat, "feat_layers": len(term.layers),
                   "final_feat_loss": history[-1].get("feat") if history else None}
                  if term is not None else {}),
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
    return DistillOutcome(student_path=path, metrics=metrics, gap=gap, out_dir=out_dir,
                          model=teacher.name)


def run(resolved: ResolvedSettings, progress: ProgressSink | None = None) -> DistillOutcome:
    """Distill the ``student`` file onto the teacher the settings name, into ``out`` (or the
    ``resume`` folder), scored on the synthetic test set of the teacher's task.

    Raises:
        UsageError: no ``out``/``student``/model, unreadable files, bad sizes (before any
            work).
    """
    s = resolved.settings
    out_dir = require(s.common.resume or s.common.out, "out",
                      " (the folder for the distilled student)")
    student_file = require(s.distill.student, "student",
                           " (student.safetensors written by 'prune')")
    require(s.common.model, "model", " (the teacher; neither the $weights nor the $student "
                                     "file names its model)")
    steps = s.dream.joint_steps
    check_offline_inputs(s.distill.dreams is not None, s.distill.inputs)
    recovery = resolve_recovery(resolved)
    online = s.distill.dreams is None
    ctx = training_context(resolved, dreaming=online,
                           diversity=online and s.distill.inputs in DREAMING,
                           inputs=s.distill.inputs if online else None)
    student = load_student(student_file, ctx.teacher.name, trust=s.common.trust_checkpoint)
    dreams = read_dreams(s.distill.dreams)["dreams"] if s.distill.dreams else None
    pairs, protocol = evaluation_pairs(ctx.teacher, resolved, None, None, None)
    return run_distill(
        ctx.teacher, student, out_dir, dreams=dreams, steps=steps, schedule=ctx.schedule,
        round_steps=s.dream.round_steps, student_lr=s.distill.student_lr,
        lambda_kd=s.distill.lambda_kd, clean_source=ctx.clean_source, eval_pairs=pairs,
        **protocol, device=ctx.device, precision=ctx.precision, seed=ctx.seed,
        checkpoint_every=s.distill.checkpoint_every, resume=s.common.resume is not None,
        overwrite=s.common.overwrite, run_record=recorded_settings("distill", resolved, steps),
        progress=progress, sync=ctx.sync, inputs=s.distill.inputs, student_plan=recovery.schedule,
        features=recovery.features, adversarial=recovery.adversarial)
