"""``dreamprune_cli.runkit.recovery``: the recovery plan from the settings, the feature term."""

from __future__ import annotations

import pytest

from dreamprune_cli.engine.distill import StudentSchedule
from dreamprune_cli.engine.feature_distill import FeatureDistillation, FeatureSettings
from dreamprune_cli.errors import UsageError
from dreamprune_cli.runkit.recovery import feature_term, resolve_recovery
from dreamprune_cli.settings import resolve_settings
from tests.helpers import tiny_loaded


def test_the_plan_holds_the_distill_settings_over_the_joint_steps() -> None:
    resolved = resolve_settings({"lr_schedule": "cosine", "warmup_steps": 2, "ema_decay": 0.9,
                                 "lambda_feat": 0.5, "feat_layers": ["g1*"], "steps": 10},
                                env={})
    plan = resolve_recovery(resolved)
    assert plan.schedule == StudentSchedule(lr_schedule="cosine", warmup_steps=2,
                                            lr_min_ratio=0.01, ema_decay=0.9, total_steps=10)
    assert plan.features == FeatureSettings(0.5, ("g1*",))


def test_the_default_plan_is_the_method() -> None:
    plan = resolve_recovery(resolve_settings({}, env={}))
    assert not plan.schedule.scheduled and plan.schedule.total_steps == 400
    assert plan.schedule.ema_decay == 0.0 and not plan.features.enabled


def test_a_warmup_as_long_as_the_run_is_refused() -> None:
    with pytest.raises(UsageError, match="warmup_steps 5: the cosine schedule needs updates"):
        resolve_recovery(resolve_settings({"lr_schedule": "cosine", "warmup_steps": 5,
                                           "steps": 5}, env={}))


def test_the_feature_term_only_when_enabled() -> None:
    teacher, student = tiny_loaded("ffa", blocks=1), tiny_loaded("ffa", blocks=1)
    assert feature_term(None, teacher, student) is None
    assert feature_term(FeatureSettings(0.0), teacher, student) is None
    assert isinstance(feature_term(FeatureSettings(1.0), teacher, student), FeatureDistillation)


def test_the_adversarial_search_is_planned_only_on_adversarial_inputs(caplog) -> None:
    """On other inputs the search's settings are ignored, with a warning when the user set
    them; run.json records them only on adversarial inputs."""
    import logging

    from dreamprune_cli.runkit.context import recorded_settings
    from dreamprune_cli.settings import resolve_settings

    moved = resolve_settings({"inputs": "adversarial", "adversarial_eps": 0.05}, env={})
    plan = resolve_recovery(moved)
    assert plan.adversarial is not None and plan.adversarial.eps == 0.05
    assert recorded_settings("distill", moved, 2)["adversarial_eps"] == 0.05
    plain = resolve_settings({"inputs": "synthetic", "adversarial_steps": 3}, env={})
    with caplog.at_level(logging.WARNING):
        assert resolve_recovery(plain).adversarial is None
    assert "--adversarial-steps (from flag --adversarial-steps) only acts with --inputs " \
        "adversarial; ignored" in caplog.text
    recorded = recorded_settings("distill", plain, 2)
    assert "adversarial_eps" not in recorded and "adversarial_steps" not in recorded
