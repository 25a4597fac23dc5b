"""The run layer called from Python, as bench/ and users do: settings in, typed result and
run folder out; errors name settings fields (the command line spells them as flags)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.checkpoint import save_safetensors
from dreamprune_cli.models.registry import build_model, model_config
from dreamprune_cli.runs import evaluate, prune, synth
from dreamprune_cli.settings import resolve_run_settings, resolve_settings


def _settings(**values: object):
    return resolve_settings({"device": "cpu", "threads": 1, **values}, env={})


def _tiny_ffa(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_safetensors(tmp_path / "ffa.safetensors",
                            build_model("ffa", "tiny", blocks=1).state_dict(), "ffa",
                            model_config("ffa", "tiny", blocks=1))


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


def test_prune_run_writes_the_student_files(tmp_path: Path) -> None:
    weights = _tiny_ffa(tmp_path)
    done = prune.run(_settings(model="ffa", weights=weights, flops_target=0.6,
                               allocator="lamp", flops_size=64, out=tmp_path / "p"))
    assert done.result.macs_ratio == pytest.approx(0.6, abs=0.005)
    assert {k: p.name for k, p in done.files.items()} == {
        "student": "student.safetensors", "masks": "masks.safetensors",
        "report": "report.json"}
    report = json.loads((tmp_path / "p" / "report.json").read_text())
    assert report["allocator"] == "lamp" and report["macs_ratio"] == done.result.macs_ratio
    assert done.layer_table().rows and done.summary()["output"] == tmp_path / "p"


def _kept_in_multiples(groups: list[dict], multiple: int) -> bool:
    """Every group keeps a multiple of ``multiple``, is no wider than it, or is kept whole."""
    return all(g["kept"] % multiple == 0 or g["channels"] <= multiple
               or g["kept"] == g["channels"] for g in groups)


def test_prune_run_channel_multiple_reaches_the_plan_and_the_files(tmp_path: Path) -> None:
    from safetensors import safe_open

    weights = _tiny_ffa(tmp_path)
    done = prune.run(_settings(model="ffa", weights=weights, granularity="channel",
                               channel_multiple=4, allocator="lamp", flops_target=0.6,
                               flops_size=32, out=tmp_path / "p"))
    groups = done.result.details["groups"]
    assert done.result.details["channel_multiple"] == 4
    assert _kept_in_multiples(groups, 4)
    # not vacuous: a group wider than 4 was thinned, to a multiple of 4
    assert any(g["channels"] > 4 and 0 < g["kept"] < g["channels"] for g in groups)
    assert "multiple 4" in done.layer_table().title
    with safe_open(str(done.files["student"]), "pt") as f:
        assert f.metadata()["dreamprune.prune.channel_multiple"] == "4"
    report = json.loads(done.files["report"].read_text())
    assert report["details"]["channel_multiple"] == 4


def test_a_contradictory_channel_multiple_is_refused_before_any_work(tmp_path: Path) -> None:
    """(The resolver's rule: tests/test_prune_spec.py.)"""
    # refused before any work: the weights are not read, no folder is made
    with pytest.raises(UsageError, match="channel_multiple"):
        prune.run(_settings(model="ffa", weights=tmp_path / "missing.safetensors",
                            channel_multiple=8, out=tmp_path / "p"))
    assert not (tmp_path / "p").exists()


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
