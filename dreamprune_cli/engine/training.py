"""The joint dream + distill loop as the pipeline, the ``distill`` command (online) and the
Python API build and run it: :func:`joint_trainer` (the loop of a teacher and a student on
their inputs) and :func:`train_joint` (run to a number of steps, checkpointed and resumable).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from dreamprune_cli.data.clean import CleanSource
from dreamprune_cli.engine.distill import Distiller, StudentSchedule
from dreamprune_cli.engine.distributed import RankSync
from dreamprune_cli.engine.dream import DreamSchedule
from dreamprune_cli.engine.feature_distill import FeatureDistillation
from dreamprune_cli.engine.inputs import (AdversarialSettings, check_feature_inputs,
                                          make_input_source)
from dreamprune_cli.engine.joint import CHECKPOINT_NAME, JointResult, JointTrainer
from dreamprune_cli.engine.runtime import Precision
from dreamprune_cli.progress import ProgressSink


def joint_trainer(teacher: torch.nn.Module, student: torch.nn.Module, clean_source: CleanSource,
                  schedule: DreamSchedule, round_steps: int, student_lr: float,
                  lambda_kd: float, generator: torch.Generator, device: torch.device,
                  precision: Precision,
                  lr_lambda: Callable[[int], float] | None = None,
                  sync: RankSync | None = None, inputs: str = "dreams",
                  student_plan: StudentSchedule | None = None,
                  features: FeatureDistillation | None = None,
                  adversarial: AdversarialSettings | None = None) -> JointTrainer:
    """The joint dream + distill loop of ``teacher`` and ``student`` (adapters on
    ``device``), drawing its randomness from ``generator``; ``student_plan``: the student's
    learning-rate schedule and weight averaging (``None``: constant rate, no averaging);
    ``lr_lambda``: instead, any learning-rate factor per step
    (:class:`~dreamprune_cli.engine.distill.Distiller`);
    ``sync``: one of several processes (each dreams ``batch_size / N``, the student in
    ``DistributedDataParallel``, rank 0 writes the checkpoints); ``inputs``: the student's
    inputs, ``dreams``, ``synthetic``, ``mixed`` or ``adversarial`` (whose search
    ``adversarial`` sets; default :class:`~dreamprune_cli.engine.inputs.AdversarialSettings`)
    (:func:`~dreamprune_cli.engine.inputs.make_input_source`); ``features``: the feature term
    (:func:`~dreamprune_cli.runkit.recovery.feature_term`; ``None``: off).

    Raises:
        UsageError: as :func:`~dreamprune_cli.engine.inputs.make_input_source`; the feature
            term with ``adversarial`` inputs.
    """
    if features is not None:
        check_feature_inputs(inputs, features.settings.lambda_feat)
    source = make_input_source(inputs, teacher, clean_source, schedule, generator, device,
                               precision, sync, student=student, adversarial=adversarial)
    distiller = Distiller(student, student_lr, lambda_kd, device, precision, sync,
                          schedule=student_plan, lr_lambda=lr_lambda, features=features)
    return JointTrainer(source, distiller, round_steps, generator, sync)


def train_joint(trainer: JointTrainer, out_dir: Path, steps: int, checkpoint_every: int,
                resume: bool, progress: ProgressSink) -> tuple[JointResult, float]:
    """Run ``trainer`` to ``steps`` joint steps, checkpointed in ``out_dir/checkpoint.pt``
    (loaded first on ``resume``; none: stopped before its first checkpoint); then the
    student takes its weights' moving average, if it keeps one
    (:meth:`~dreamprune_cli.engine.distill.Distiller.adopt_average`).

    Returns:
        The loop's result and the training seconds of earlier sessions (0 when new).
    """
    checkpoint = out_dir / CHECKPOINT_NAME
    if resume and checkpoint.is_file():
        trainer.load(checkpoint)
    earlier = trainer.seconds
    result = trainer.run(steps, checkpoint, checkpoint_every, progress)
    trainer.distiller.adopt_average()  # after the last checkpoint, which keeps both
    return result, earlier
