"""The student's recovery settings as the loops take them, decided once per run
(:func:`resolve_recovery`): the learning-rate schedule and weight average
(:class:`~dreamprune_cli.engine.distill.StudentSchedule`) and the feature term
(:class:`~dreamprune_cli.engine.feature_distill.FeatureSettings`, built into a
:class:`~dreamprune_cli.engine.feature_distill.FeatureDistillation` at the channels the
student kept)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from dreamprune_cli.engine.distill import StudentSchedule
from dreamprune_cli.engine.feature_distill import FeatureDistillation, FeatureSettings
from dreamprune_cli.engine.inputs import AdversarialSettings, check_feature_inputs
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.prune.channel_map import teacher_channels
from dreamprune_cli.run_record import ADVERSARIAL_FIELDS
from dreamprune_cli.settings import ResolvedSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecoveryPlan:
    """How a ``distill`` or ``pipeline`` run recovers its student, beyond the joint loop's
    own settings: the learning-rate schedule and weight averaging over the run's joint steps,
    the feature term, and on ``adversarial`` inputs their search (else ``None``)."""

    schedule: StudentSchedule
    features: FeatureSettings
    adversarial: AdversarialSettings | None = None


def resolve_recovery(resolved: ResolvedSettings) -> RecoveryPlan:
    """The run's recovery plan from its ``distill`` settings, over its ``joint_steps``;
    decided once, before any work (a warning names the adversarial search's settings when
    the user set them for other inputs).

    Raises:
        UsageError: ``cosine`` with ``warmup_steps`` not below the run's steps; the feature
            term with ``adversarial`` inputs.
    """
    s = resolved.settings
    values = s.distill.model_dump()
    check_feature_inputs(s.distill.inputs, s.distill.lambda_feat)
    adversarial = AdversarialSettings.for_inputs(s.distill.inputs, s.distill.adversarial_eps,
                                                 s.distill.adversarial_steps)
    for name in ADVERSARIAL_FIELDS:
        if adversarial is None and resolved.user_set(name):
            log.warning("--%s (from %s) only acts with --inputs adversarial; ignored",
                        name.replace("_", "-"), resolved.sources[name])
    return RecoveryPlan(schedule=StudentSchedule.from_values(values, s.dream.joint_steps),
                        features=FeatureSettings.from_values(values), adversarial=adversarial)


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
