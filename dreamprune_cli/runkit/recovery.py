"""The student's recovery settings as the loops take them, decided once per run: the
learning-rate schedule and weight average (:class:`~dreamprune_cli.engine.distill.StudentSchedule`)
and the feature term (:class:`~dreamprune_cli.engine.feature_distill.FeatureSettings`, built
into a :class:`~dreamprune_cli.engine.feature_distill.FeatureDistillation` at the channels the
student kept)."""

from __future__ import annotations

import torch

from dreamprune_cli.engine.distill import StudentSchedule
from dreamprune_cli.engine.feature_distill import FeatureDistillation, FeatureSettings
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.prune.channel_map import teacher_channels
from dreamprune_cli.settings import ResolvedSettings


def student_schedule(resolved: ResolvedSettings) -> StudentSchedule:
    """The student's learning-rate schedule and weight averaging of a ``distill`` or
    ``pipeline`` run (its ``distill`` settings over its joint steps), checked before any work.

    Raises:
        UsageError: ``cosine`` with ``warmup_steps`` not below the run's steps.
    """
    s = resolved.settings
    return StudentSchedule.from_values(s.distill.model_dump(), s.dream.joint_steps)


def feature_settings(resolved: ResolvedSettings) -> FeatureSettings:
    """The feature term's settings of a ``distill`` or ``pipeline`` run (``lambda_feat``,
    ``feat_layers``)."""
    return FeatureSettings.from_values(resolved.settings.distill.model_dump())


def feature_term(settings: FeatureSettings | None, teacher: LoadedModel,
                 student: LoadedModel,
                 teacher_root: torch.nn.Module | None = None) -> FeatureDistillation | None:
    """The feature term between ``teacher`` and ``student`` at the channels the student kept
    (:func:`~dreamprune_cli.prune.channel_map.teacher_channels`); ``None`` when off.
    ``teacher_root``: the teacher's adapter (whose forwards the teacher's hooks group).

    Raises:
        UsageError: no layer to match, a ``feat_layers`` glob that matches none, or a
            channel-pruned student without its kept-channel map.
    """
    if settings is None or not settings.enabled:
        return None
    return FeatureDistillation.build(settings, teacher.network, student.network,
                                     teacher_channels(student), teacher_root)
