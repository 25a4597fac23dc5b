"""``--inputs dreams|synthetic|mixed|adversarial`` of distill and pipeline, end to end through the
CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamprune_cli.cli import app
from tests.runs.test_commands import TINY, _ffa_weights, _prune

pytestmark = pytest.mark.slow  # whole commands, end to end (CI runs them too)


def _distill_args(weights: Path, student: Path, out: Path, *extra: str) -> list[str]:
    return ["distill", "--model", "ffa", "--weights", str(weights), "--student", str(student),
            "--out", str(out), *TINY[2:], *extra]


def test_distill_on_synthetic_and_mixed_inputs_and_resume(runner, tmp_path: Path) -> None:
    weights = _ffa_weights(tmp_path)
    student = _prune(runner, weights, tmp_path / "pruned")
    out = tmp_path / "synthetic"
    args = _distill_args(weights, student, out, "--inputs", "synthetic", "--steps", "2",
                         "--checkpoint-every", "1")
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["mode"] == "online" and data["inputs"] == "synthetic" and data["steps"] == 2
    assert (out / "losses.csv").read_text().splitlines()[0] == "step,kd"  # nothing dreamed
    assert (out / "losses.png").is_file()
    assert json.loads((out / "run.json").read_text())["settings"]["inputs"] == "synthetic"
    # the inputs define the run: a resume keeps them, and refuses a change
    changed = runner.invoke(app, ["distill", "--resume", str(out), "--inputs", "mixed"])
    assert changed.exit_code == 2
    assert "inputs was 'synthetic' in this run, now 'mixed'" in changed.output
    more = runner.invoke(app, ["distill", "--resume", str(out), "--steps", "3", "--json"])
    assert more.exit_code == 0, more.output
    data = json.loads(more.stdout)
    assert data["inputs"] == "synthetic" and data["steps"] == 3
    # from the environment: half dreams, half synthetic images
    mixed = tmp_path / "mixed"
    result = runner.invoke(app, [*_distill_args(weights, student, mixed, "--steps", "2"),
                                 "--json"], env={"DREAMPRUNE_INPUTS": "mixed"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inputs"] == "mixed"
    assert (mixed / "losses.csv").read_text().splitlines()[0] == "step,dream,orth,kd"


def test_distill_on_adversarial_inputs_and_resume(runner, tmp_path: Path) -> None:
    """The search's settings define the run: a resume keeps them and refuses a change; the
    feature term is refused beside them before any work."""
    weights = _ffa_weights(tmp_path)
    student = _prune(runner, weights, tmp_path / "pruned")
    out = tmp_path / "adversarial"
    args = _distill_args(weights, student, out, "--inputs", "adversarial", "--steps", "2",
                         "--adversarial-eps", "0.05", "--checkpoint-every", "1")
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inputs"] == "adversarial"
    assert (out / "losses.csv").read_text().splitlines()[0] == "step,gap,kd"
    settings = json.loads((out / "run.json").read_text())["settings"]
    assert settings["adversarial_eps"] == 0.05 and settings["adversarial_steps"] == 1
    changed = runner.invoke(app, ["distill", "--resume", str(out), "--adversarial-eps", "0.1"])
    assert changed.exit_code == 2
    assert "adversarial_eps was 0.05 in this run, now 0.1" in changed.output
    feat = tmp_path / "feat"
    refused = runner.invoke(app, _distill_args(weights, student, feat, "--inputs",
                                               "adversarial", "--lambda-feat", "1"))
    assert refused.exit_code == 2
    assert "--lambda-feat 1: the feature term does not run with --inputs adversarial" \
        in refused.output
    assert not feat.exists()
    single = runner.invoke(app, _distill_args(weights, student, feat, "--inputs",
                                              "adversarial", "--batch-size", "1"))
    assert single.exit_code == 2 and "--inputs adversarial: --batch-size 1" in single.output


def test_bad_inputs_are_refused_before_any_work(runner, tmp_path: Path) -> None:
    weights = _ffa_weights(tmp_path)
    student = tmp_path / "pruned" / "student.safetensors"  # never read: refused first
    out = tmp_path / "out"
    bad = runner.invoke(app, _distill_args(weights, student, out, "--inputs", "noise"))
    assert bad.exit_code == 2
    lines = [line for line in bad.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--inputs" in lines[0] and "noise" in lines[0]
    student = _prune(runner, weights, tmp_path / "pruned")
    offline = runner.invoke(app, _distill_args(weights, student, out, "--inputs", "synthetic",
                                               "--dreams", str(tmp_path / "dreams")))
    assert offline.exit_code == 2
    assert "--inputs synthetic: --dreams distills offline" in offline.output
    single = runner.invoke(app, _distill_args(weights, student, out, "--inputs", "mixed",
                                              "--batch-size", "1"))
    assert single.exit_code == 2 and "--inputs mixed: --batch-size 1" in single.output
    assert not out.exists()


def test_pipeline_on_synthetic_inputs(runner, tmp_path: Path, pair_dirs) -> None:
    weights = _ffa_weights(tmp_path)
    inputs, targets = pair_dirs
    out = tmp_path / "run"
    args = ["pipeline", "--weights", str(weights), "--flops-target", "0.58", "--steps", "2",
            "--calibration-steps", "1", "--flops-size", "64", "--out", str(out),
            "--eval-input-dir", str(inputs), "--eval-target-dir", str(targets),
            "--inputs", "synthetic", *TINY[2:]]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["inputs"] == "synthetic" and data["steps"] == 2
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["inputs"] == "synthetic"
    markdown = (out / "report.md").read_text()
    assert "2 joint steps on synthetic degraded images" in markdown
    assert "synthetic + distill" in markdown
    assert "dreams.png: the last step's synthetic inputs" in markdown
    assert (out / "dreams.png").is_file()  # the synthetic inputs, teacher, student, clean
    assert (out / "losses.csv").read_text().splitlines()[0] == "step,kd"
    changed = runner.invoke(app, ["pipeline", "--resume", str(out), "--inputs", "dreams"])
    assert changed.exit_code == 2
    assert "inputs was 'synthetic' in this run, now 'dreams'" in changed.output
