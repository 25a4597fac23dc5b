"""``--lr-schedule``, ``--warmup-steps``, ``--lr-min-ratio``, ``--ema-decay`` and
``--dream-init`` of distill and pipeline, end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dreamprune_cli.cli import app
from dreamprune_cli.prune.unstructured.masks import get_masks, plain_state_dict
from dreamprune_cli.prune.student import load_student
from tests.runs.test_commands import TINY, _ffa_weights, _prune

pytestmark = pytest.mark.slow  # whole commands, end to end (CI runs them too)

RECOVERY = ["--lr-schedule", "cosine", "--warmup-steps", "1", "--lr-min-ratio", "0.1",
            "--ema-decay", "0.5", "--dream-init", "synthetic"]


def test_distill_with_a_recovery_schedule_saves_the_average_and_resumes_safely(
        runner, tmp_path: Path) -> None:
    weights = _ffa_weights(tmp_path)
    student = _prune(runner, weights, tmp_path / "pruned")
    out = tmp_path / "run"
    args = ["distill", "--model", "ffa", "--weights", str(weights), "--student", str(student),
            "--out", str(out), *TINY[2:], "--steps", "3", "--checkpoint-every", "1", *RECOVERY]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["steps"] == 3
    recorded = json.loads((out / "run.json").read_text())["settings"]
    assert {k: recorded[k] for k in ("lr_schedule", "warmup_steps", "lr_min_ratio",
                                     "ema_decay", "dream_init")} == {
        "lr_schedule": "cosine", "warmup_steps": 1, "lr_min_ratio": 0.1, "ema_decay": 0.5,
        "dream_init": "synthetic"}
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["recorded"] == {"lr_schedule": "cosine", "warmup_steps": 1, "ema_decay": 0.5,
                                 "lr_min_ratio": 0.1, "steps": 3, "dream_init": "synthetic"}
    assert state["distiller"]["scheduler"]["last_epoch"] == 3
    # the student written is the average (masks applied), not the raw weights
    average = load_student(student, "ffa")
    average.network.load_state_dict({k.removeprefix("module."): v for k, v in
                                     state["distiller"]["average"].items()
                                     if k.startswith("module.")})
    expected = plain_state_dict(average.network)
    saved = load_file(str(out / "student.safetensors"))
    assert saved.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(saved[key], value), key
    raw = state["distiller"]["student"]
    assert any(not torch.equal(saved[k], raw[k]) for k in saved if k in raw)
    masks = load_file(str(out / "masks.safetensors"))
    assert masks.keys() == get_masks(average.network).keys()
    for name, mask in masks.items():
        assert torch.all(saved[f"{name}.weight"][~mask.bool()] == 0), name
    # each of them defines the run: a resume refuses a change, in one line naming it
    for flag, value, name, before in (("--lr-schedule", "constant", "lr_schedule", "'cosine'"),
                                      ("--warmup-steps", "2", "warmup_steps", "1"),
                                      ("--lr-min-ratio", "0.2", "lr_min_ratio", "0.1"),
                                      ("--ema-decay", "0.9", "ema_decay", "0.5"),
                                      ("--dream-init", "noise", "dream_init", "'synthetic'")):
        changed = runner.invoke(app, ["distill", "--resume", str(out), flag, value])
        assert changed.exit_code == 2, (flag, changed.output)
        lines = [line for line in changed.output.splitlines() if line.strip()]
        assert len(lines) == 1 and f"{name} was {before} in this run" in lines[0], lines
    # the cosine spans the run's steps: more steps would change it (refused before any work)
    longer = runner.invoke(app, ["distill", "--resume", str(out), "--steps", "4"])
    assert longer.exit_code == 2
    assert "--steps 4: the checkpoint" in longer.output and "--steps 3" in longer.output
    assert json.loads((out / "run.json").read_text())["settings"]["steps"] == 3  # refused
    again = runner.invoke(app, ["distill", "--resume", str(out), "--json"])
    assert again.exit_code == 0, again.output
    resaved = load_file(str(out / "student.safetensors"))
    assert all(torch.equal(resaved[k], saved[k]) for k in saved)


def test_pipeline_takes_the_recovery_flags(runner, tmp_path: Path, pair_dirs) -> None:
    weights = _ffa_weights(tmp_path)
    inputs, targets = pair_dirs
    out = tmp_path / "run"
    args = ["pipeline", "--weights", str(weights), "--flops-target", "0.58", "--steps", "2",
            "--calibration-steps", "1", "--flops-size", "64", "--out", str(out),
            "--eval-input-dir", str(inputs), "--eval-target-dir", str(targets), *TINY[2:],
            *RECOVERY]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["ema_decay"] == 0.5
    assert report["settings"]["dream_init"] == "synthetic"
    assert json.loads((out / "run.json").read_text())["settings"]["lr_schedule"] == "cosine"
    too_long = runner.invoke(app, [*args[:-len(RECOVERY)], "--out", str(tmp_path / "other"),
                                   "--lr-schedule", "cosine", "--warmup-steps", "2"])
    assert too_long.exit_code == 2
    assert "--warmup-steps 2: the cosine schedule needs updates after the warm-up" \
        in too_long.output
    assert not (tmp_path / "other").exists()
