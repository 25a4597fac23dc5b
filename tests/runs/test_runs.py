"""The run layer called from Python, as bench/ and users do: settings in, typed result and
run folder out; errors name settings fields (the command line spells them as flags). (The
prune run: ``test_prune.py``.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamprune_cli.errors import UsageError
from dreamprune_cli.runs import evaluate, synth
from dreamprune_cli.settings import resolve_run_settings, resolve_settings
from tests.helpers import run_settings as _settings
from tests.helpers import tiny_ffa_weights as _tiny_ffa


def test_synth_then_evaluate_from_python(tmp_path: Path) -> None:
    made = synth.run(_settings(task="derain", count=2, size=32, out=tmp_path / "set"))
    assert made.out_dir == tmp_path / "set"
    assert sorted(p.name for p in (made.out_dir / "input").iterdir()) == \
        sorted(p.name for p in (made.out_dir / "target").iterdir())
    assert made.summary()["count"] == 2 and made.tables()[0].rows[0][0] == 2

    scored = evaluate.run(_settings(model="identity", input_dir=made.out_dir / "input",
                                    target_dir=made.out_dir / "target", metric_space="rgb"))
    summary = scored.summary()
    assert summary["count"] == 2 and summary["model"] == "identity"
    # identity restores nothing: its PSNR is the degraded inputs' PSNR, and the table agrees
    assert scored.tables()[0].rows[0][1] == pytest.approx(summary["psnr"])
    assert json.dumps(summary, default=str)


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
