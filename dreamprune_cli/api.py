"""The Python API: the method's steps as plain functions with the CLI's defaults.

Everything here is re-exported by the package (``from dreamprune_cli import dream``), with
:func:`~dreamprune_cli.prune.unstructured.plan.prune_model` and
:func:`~dreamprune_cli.models.loading.load_model`::

    teacher = load_model("ffa")                                  # bundled FFA-Net teacher
    student = prune_model(teacher, 0.58, "lamp").student        # masked copy, 58% of MACs
    dreams = dream(teacher, count=8, steps=50)                   # DreamResult
    history = distill(teacher, student, dreams=dreams.dreams, steps=100)
    print(evaluate(student).psnr, count_macs(student).macs)

Models are :class:`~dreamprune_cli.models.loading.LoadedModel` records (network, registry
facts, config); the functions call them through the model's adapter, so images are always
RGB ``(N, 3, H, W)`` float32 in [0, 1]. Nothing here prints: pass a ``progress`` sink
(:mod:`dreamprune_cli.progress`) to follow long runs. The same steps as whole commands,
from settings to a run folder, are :mod:`dreamprune_cli.runs` (``runs.pipeline.run``, ...);
these functions share their run context (:mod:`dreamprune_cli.runkit.context`: device,
precision, seeded generators, evaluation pairs) and their joint loop. The lower-level engine
(:func:`prune_model`, :func:`dream_images`, the ``Dreamer``/``Distiller`` loop) is exported
too for finer control. (There is no ``prune`` function: ``dreamprune_cli.prune`` is the
subpackage of allocators and masks.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.data.pairs import pair_folders
from dreamprune_cli.data.synthetic import synthetic_test_set
from dreamprune_cli.engine.distill import (Distiller, DistillResult, StudentSchedule,
                                           distill_offline)
from dreamprune_cli.engine.dream import DreamResult, DreamSchedule, dream_images
from dreamprune_cli.engine.evaluate import EvaluationResult, evaluate_pairs, scoring_protocol
from dreamprune_cli.engine.feature_distill import FeatureSettings
from dreamprune_cli.engine.inputs import AdversarialSettings
from dreamprune_cli.engine.runtime import resolve_device, resolve_precision
from dreamprune_cli.engine.training import joint_trainer
from dreamprune_cli.errors import UsageError
from dreamprune_cli.flops import CostReport, count_costs
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.runkit.checks import check_offline_inputs
from dreamprune_cli.runkit.context import generator as seeded
from dreamprune_cli.runkit.recovery import feature_term


def _network(model: LoadedModel | nn.Module) -> nn.Module:
    """The RGB-in, RGB-out module of ``model`` (its adapter for a :class:`LoadedModel`)."""
    return model.adapter() if isinstance(model, LoadedModel) else model


def dream(teacher: LoadedModel, count: int = 8, steps: int = 200, *, size: int = 64,
          batch_size: int = 8, seed: int = 0, device: str = "auto",
          clean_dir: str | Path | None = None, scenes: str = "leaves",
          progress: ProgressSink | None = None, **schedule: Any) -> DreamResult:
    """Invert ``teacher``: optimise ``count`` noise images of ``size`` px, ``steps`` Adam
    steps per batch of ``batch_size``, into inputs it restores to clean targets.

    ``schedule``: further :class:`DreamSchedule` fields (``noise_lr`` 5e-2, ``lambda_orth``
    0.05, ``lambda_tv`` 0, ``lambda_far`` 0, ``representation`` ``gram``). Returns a
    :class:`DreamResult` with ``dreams``, ``clean`` and ``restored`` as ``(count, 3, size,
    size)`` float32 CPU tensors in [0, 1] (``restored`` unclamped), the loss history and the
    batch diversity (mean pairwise cosine, 1 = all alike). Clean targets are crops of
    ``clean_dir``'s images, else procedural ``scenes`` (``leaves`` or ``rooms``).
    """
    device_ = resolve_device(device)
    plan = DreamSchedule(size=size, batch_size=batch_size, **schedule)
    return dream_images(teacher.adapter().to(device_), make_clean_source(clean_dir, scenes),
                        count, steps, plan, seeded(seed), device_, resolve_precision(device_),
                        progress)


def distill(teacher: LoadedModel, student: LoadedModel, steps: int = 400, *,
            dreams: torch.Tensor | None = None, student_lr: float = 1e-4,
            lambda_kd: float = 1.0, batch_size: int = 8, size: int = 64,
            round_steps: int = 50, seed: int = 0, device: str = "auto",
            clean_dir: str | Path | None = None, scenes: str = "leaves",
            progress: ProgressSink | None = None, inputs: str = "dreams",
            lr_schedule: str = "constant", warmup_steps: int = 0,
            lr_min_ratio: float = 0.01, ema_decay: float = 0.0,
            lambda_feat: float = 0.0, feat_layers: Sequence[str] = (),
            adversarial_eps: float = 0.03, adversarial_steps: int = 1,
            **schedule: Any) -> list[dict[str, float]]:
    """Train ``student`` (in place, masks kept) to match ``teacher`` on dreamed inputs.

    With ``dreams`` (``(N, 3, H, W)`` in [0, 1], e.g. ``dream(...).dreams``): offline, on
    random minibatches of them. Without: online, the joint loop that dreams a new batch
    every step and restarts from noise every ``round_steps`` steps (``schedule`` as in
    :func:`dream`). ``inputs`` (online only): ``dreams`` (the method), ``synthetic``
    (procedural degraded images of the teacher's task, a fresh batch every step, nothing
    dreamed; ``clean_dir`` gives their scenes, else the procedural ``scenes``: ``leaves``
    or ``rooms``, whose haze follows the room's depth), ``mixed`` (each batch half
    dreams, half synthetic) or ``adversarial`` (synthetic, the second half of each batch
    moved within ``adversarial_eps`` by ``adversarial_steps`` steps of gradient ascent on
    the student-teacher L1 distance: :class:`~dreamprune_cli.engine.inputs.AdversarialInputs`);
    ``dream_init="synthetic"`` (a ``schedule`` field) starts each round of
    dreams from synthetic degraded images instead of noise. ``lr_schedule`` (``constant``
    or ``cosine``: to ``lr_min_ratio`` of ``student_lr`` over ``steps``), ``warmup_steps``
    (linear warm-up) and ``ema_decay`` (above 0: the student ends with the moving average
    of its weights) as :class:`~dreamprune_cli.engine.distill.StudentSchedule`.
    ``lambda_feat`` (above 0) adds feature distillation: the mean L1 distance between every
    convolution/linear layer's output and the teacher's at the channels the student kept,
    restricted to the layers matching ``feat_layers`` globs if given
    (:mod:`dreamprune_cli.engine.feature_distill`). Returns the per-step loss history
    (``kd``, ``feat`` with the feature term, and ``dream``/``orth`` when dreams are among the
    inputs).

    Raises:
        UsageError: ``dreams`` with ``inputs`` other than ``dreams``; an unknown ``inputs``;
            ``mixed`` or ``adversarial`` with ``batch_size`` 1; a schedule value out of range;
            a negative ``lambda_feat``, a ``feat_layers`` glob that matches no shared layer;
            ``adversarial_eps`` outside (0, 1], ``adversarial_steps`` below 1; the feature
            term with ``adversarial`` inputs.
    """
    check_offline_inputs(dreams is not None, inputs)
    adversarial = AdversarialSettings.for_inputs(inputs, adversarial_eps, adversarial_steps)
    recovery = StudentSchedule(lr_schedule=lr_schedule,  # type: ignore[arg-type]
                               warmup_steps=warmup_steps, lr_min_ratio=lr_min_ratio,
                               ema_decay=ema_decay, total_steps=steps)
    features = FeatureSettings(lambda_feat, tuple(feat_layers))
    device_ = resolve_device(device)
    precision = resolve_precision(device_)
    generator = seeded(seed)
    student.network.to(device_)
    student_adapter = student.adapter().to(device_)
    teacher_adapter = teacher.adapter().to(device_)
    term = feature_term(features, teacher, student, teacher_adapter)
    if dreams is not None:
        if dreams.dim() != 4 or dreams.shape[1] != 3:
            raise UsageError(f"dreams: expected (N, 3, H, W), got {tuple(dreams.shape)}")
        distiller = Distiller(student_adapter, student_lr, lambda_kd, device_, precision,
                              schedule=recovery, features=term)
        result: DistillResult = distill_offline(distiller, teacher_adapter, dreams, steps,
                                                batch_size, generator, progress)
        distiller.adopt_average()
        return result.history
    plan = DreamSchedule(size=size, batch_size=batch_size, **schedule)
    trainer = joint_trainer(teacher_adapter, student_adapter,
                            make_clean_source(clean_dir, scenes),
                            plan, round_steps, student_lr, lambda_kd, generator, device_,
                            precision, inputs=inputs, student_plan=recovery, features=term,
                            adversarial=adversarial)
    history = trainer.run(steps, progress=progress).history
    trainer.distiller.adopt_average()
    return history


def evaluate(model: LoadedModel | nn.Module, input_dir: str | Path | None = None,
             target_dir: str | Path | None = None, *, task: str | None = None,
             metric_space: str | None = None, crop_border: int | None = None,
             ssim_variant: str | None = None, quantize: str | None = None,
             pairing: str = "stem", limit: int | None = None,
             device: str = "auto") -> EvaluationResult:
    """PSNR/SSIM of ``model`` on degraded/clean pairs, scored like ``dreamprune evaluate``.

    Without folders: the synthetic test set of the model's task (12 pairs of 128x128,
    cached). ``metric_space`` (``y`` or ``rgb``), ``crop_border``, ``ssim_variant``
    (``basicsr`` or ``matlab``) and ``quantize`` (``round`` or ``truncate``) default to the
    model's registry entry (RGB, 0, basicsr, round for a bare module); ``pairing`` is
    ``stem``, ``rain100`` or ``sots`` as for the command. Returns an
    :class:`EvaluationResult` (``psnr`` in dB, ``ssim``, ``per_image``, MACs and parameters).

    Raises:
        UsageError: only one folder given, missing folders, or unpaired files.
    """
    info = model.info if isinstance(model, LoadedModel) else None
    if (input_dir is None) != (target_dir is None):
        raise UsageError("evaluate: input_dir and target_dir go together")
    if input_dir is None:
        input_dir, target_dir = synthetic_test_set(task or (info.task if info else "derain"))
    pairs = pair_folders(Path(input_dir), Path(target_dir), limit=limit,  # type: ignore[arg-type]
                         pairing=pairing)  # type: ignore[arg-type]
    protocol = scoring_protocol(info, metric_space, crop_border, ssim_variant, quantize)
    return evaluate_pairs(_network(model), pairs, device=resolve_device(device), **protocol)


def count_macs(model: LoadedModel | nn.Module, size: int = 256) -> CostReport:
    """Multiply-accumulates and parameters of ``model`` for one ``3 x size x size`` input.

    ``report.macs`` skips zero (pruned) weights, ``report.macs_dense`` counts them;
    ``report.params`` and ``report.params_nonzero`` likewise; ``report.layers`` per layer.
    """
    return count_costs(_network(model), (3, size, size))
