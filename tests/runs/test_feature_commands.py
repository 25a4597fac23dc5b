"""``--lambda-feat`` / ``--feat-layers`` of distill and pipeline, end to end through the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from dreamprune_cli.cli import app
from tests.runs.test_commands import TINY, _ffa_weights, _prune

pytestmark = pytest.mark.slow  # whole commands, end to end (CI runs them too)


def test_pipeline_with_feature_distillation_records_and_refuses_changes(
        runner, tmp_path: Path, pair_dirs) -> None:
    weights = _ffa_weights(tmp_path)
    inputs, targets = pair_dirs
    out = tmp_path / "run"
    args = ["pipeline", "--weights", str(weights), "--flops-target", "0.58", "--steps", "2",
            "--calibration-steps", "1", "--flops-size", "64", "--out", str(out),
            "--eval-input-dir", str(inputs), "--eval-target-dir", str(targets), *TINY[2:],
            "--lambda-feat", "0.5"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["lambda_feat"] == 0.5
    assert json.loads((out / "run.json").read_text())["settings"]["lambda_feat"] == 0.5
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["recorded"]["lambda_feat"] == 0.5 and state["recorded"]["feat_layers"] == []
    with open(out / "losses.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 and all(float(row["feat"]) > 0 for row in rows)
    changed = runner.invoke(app, ["pipeline", "--resume", str(out), "--lambda-feat", "0"])
    assert changed.exit_code == 2, changed.output
    lines = [line for line in changed.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "lambda_feat was 0.5 in this run" in lines[0], lines


def test_distill_offline_with_feature_distillation(runner, tmp_path: Path) -> None:
    weights = _ffa_weights(tmp_path)
    student = _prune(runner, weights, tmp_path / "pruned")
    dreams = tmp_path / "dreams"
    made = runner.invoke(app, ["dream", "--weights", str(weights), "--save-dir", str(dreams),
                               "--count", "2", "--steps", "1", *TINY[2:]])
    assert made.exit_code == 0, made.output
    out = tmp_path / "run"
    result = runner.invoke(app, ["distill", "--weights", str(weights), "--student",
                                 str(student), "--dreams", str(dreams), "--out", str(out),
                                 "--steps", "2", *TINY[2:], "--lambda-feat", "0.5",
                                 "--feat-layers", "g1.gp.0.conv*", "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics["mode"] == "offline" and metrics["lambda_feat"] == 0.5
    assert metrics["final_feat_loss"] > 0
    nothing = runner.invoke(app, ["distill", "--weights", str(weights), "--student",
                                  str(student), "--dreams", str(dreams), "--out",
                                  str(tmp_path / "other"), "--steps", "1", *TINY[2:],
                                  "--lambda-feat", "0.5", "--feat-layers", "nowhere"])
    assert nothing.exit_code == 2
    assert "--feat-layers 'nowhere' matches no" in nothing.output
    assert not (tmp_path / "other").exists()  # refused before any work
