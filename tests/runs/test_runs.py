"""The run layer called from Python, as bench/ and users do: settings in, typed result and
run folder out; errors name settings fields (the command line spells them as flags). (The
prune run: ``test_prune.py``; evaluate: ``test_evaluate.py``.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from dreamprune_cli.errors import UsageError
from dreamprune_cli.runs import synth
from dreamprune_cli.settings import resolve_run_settings, resolve_settings
from tests.helpers import run_settings as _settings
from tests.helpers import tiny_ffa_weights as _tiny_ffa


def test_errors_name_settings_fields_and_the_cli_spells_flags() -> None:
    with pytest.raises(UsageError) as info:
        synth.run(_settings(task="derain"))
    assert str(info.value).startswith("out is required")
    assert info.value.spelled(lambda f: "--" + f.replace("_", "-")).startswith(
        "--out is required")


def test_resolve_run_settings_takes_the_model_from_the_weights(tmp_path: Path) -> None:
    weights = _tiny_ffa(tmp_path)
    resolved = resolve_run_settings({"weights": weights}, env={}, default_model="hinet")
    assert resolved.settings.common.model == "ffa"
    assert resolved.sources["model"] == f"--weights {weights}"


def test_steps_defaults_live_in_the_settings() -> None:
    dream = resolve_settings({}, env={}).settings.dream
    assert (dream.steps, dream.dream_steps, dream.joint_steps) == (None, 200, 400)
    given = resolve_settings({"steps": 7}, env={}).settings.dream
    assert (given.dream_steps, given.joint_steps) == (7, 7)
