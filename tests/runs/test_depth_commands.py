"""``--granularity depth`` and ``depth+channel`` through the CLI: prune, evaluate, export,
pipeline (with resume), and the settings they refuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dreamprune_cli.cli import app
from dreamprune_cli.models.checkpoint import save_safetensors
from dreamprune_cli.models.loading import load_model
from dreamprune_cli.models.registry import build_model, model_config
from tests.runs.test_commands import TINY

pytestmark = pytest.mark.slow  # whole commands, end to end (CI runs them too)


def _prenet_weights(tmp_path: Path) -> Path:
    """A tiny random PReNet saved by dreamprune (3 stages, 2 residual blocks, 4 channels)."""
    torch.manual_seed(0)
    network = build_model("prenet", "tiny")
    return save_safetensors(tmp_path / "prenet_tiny.safetensors", network.state_dict(),
                            "prenet", model_config("prenet", "tiny"))


def test_prune_depth_then_evaluate_and_export_read_the_student(runner, tmp_path: Path,
                                                              pair_dirs) -> None:
    weights = _prenet_weights(tmp_path)
    out = tmp_path / "pruned"
    result = runner.invoke(app, ["prune", "--weights", str(weights), "--granularity", "depth",
                                 "--flops-target", "0.67", "--flops-size", "32",
                                 "--depth-calibration-size", "32", "--out", str(out),
                                 "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["granularity"] == "depth" and data["allocator"] == "drift"
    assert data["macs_ratio"] == pytest.approx(2 / 3)
    assert data["details"]["repeats"] == {"stages": [3, 2]}
    assert data["details"]["path"][0]["removed"] == "none"
    assert set(data["files"]) == {"student", "report"}
    student = out / "student.safetensors"
    assert load_model(None, weights=student).config["stages"] == 2

    inputs, targets = pair_dirs
    evaluated = runner.invoke(app, ["evaluate", "--weights", str(student), "--input-dir",
                                    str(inputs), "--target-dir", str(targets), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    teacher = runner.invoke(app, ["evaluate", "--weights", str(weights), "--input-dir",
                                  str(inputs), "--target-dir", str(targets), "--json"])
    assert json.loads(evaluated.stdout)["macs_256"] == pytest.approx(
        json.loads(teacher.stdout)["macs_256"] * 2 / 3, rel=1e-6)

    exported = tmp_path / "export.safetensors"
    done = runner.invoke(app, ["export", "--weights", str(student), "--out", str(exported)])
    assert done.exit_code == 0, done.output
    again = load_model(None, weights=exported)
    assert again.granularity == "depth" and again.config["stages"] == 2


def test_depth_refuses_an_explicit_allocator_and_a_channel_multiple(runner,
                                                                    tmp_path: Path) -> None:
    weights = _prenet_weights(tmp_path)
    base = ["prune", "--weights", str(weights), "--granularity", "depth", "--out",
            str(tmp_path / "p")]
    result = runner.invoke(app, [*base, "--allocator", "lamp"])
    assert result.exit_code == 2
    assert "--allocator 'lamp' (from flag --allocator) at --granularity depth" in result.output
    multiple = runner.invoke(app, [*base, "--channel-multiple", "8"])
    assert multiple.exit_code == 2 and "depth+channel" in multiple.output
    assert not (tmp_path / "p").exists()


def test_pipeline_depth_and_channel_end_to_end_and_resume(runner, tmp_path: Path,
                                                          pair_dirs) -> None:
    inputs, targets = pair_dirs
    out = tmp_path / "run"
    args = ["pipeline", "--weights", str(_prenet_weights(tmp_path)), "--flops-target", "0.5",
            "--granularity", "depth+channel", "--allocator", "lamp", "--steps", "2",
            "--flops-size", "32", "--depth-calibration-size", "32", "--out", str(out),
            "--eval-input-dir", str(inputs), "--eval-target-dir", str(targets),
            "--checkpoint-every", "1", *TINY[2:], "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["params_student"] <= data["params_teacher"]
    report = json.loads((out / "report.json").read_text())
    assert report["granularity"] == "depth+channel"
    assert report["prune"]["details"]["splits"]
    assert "calibration_dreams" not in report["phases"]  # depth measures synthetic images
    assert report["prune"]["macs_ratio"] <= 0.5 * 1.02  # within the budget
    student = load_model(None, weights=out / "student.safetensors")
    assert student.granularity in ("depth", "depth+channel")
    steps_at = args.index("--steps") + 1
    more = runner.invoke(app, args[:steps_at] + ["3"] + args[steps_at + 1:-1]
                         + ["--resume", str(out), "--json"])
    assert more.exit_code == 0, more.output
    assert json.loads(more.stdout)["steps"] == 3
    changed = runner.invoke(app, ["pipeline", "--resume", str(out), "--granularity", "depth",
                                  "--steps", "4"])
    assert changed.exit_code == 2 and "granularity" in changed.output


def test_latency_target_is_refused_with_masks_or_with_a_flops_target(runner,
                                                                      tmp_path: Path) -> None:
    weights = _prenet_weights(tmp_path)
    base = ["prune", "--weights", str(weights), "--latency-target", "0.7", "--out",
            str(tmp_path / "p")]
    masks = runner.invoke(app, base)
    assert masks.exit_code == 2 and "needs a structured --granularity" in masks.output
    both = runner.invoke(app, [*base, "--granularity", "depth", "--flops-target", "0.5"])
    assert both.exit_code == 2 and "give one of them" in both.output
