"""Issue 32 item 3: warnings that a setting is ignored speak only of settings the user set
(flag, environment, config file), never of a default, a preset or a resumed run's record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dreamprune_cli.cli import app
from dreamprune_cli.models.checkpoint import save_safetensors
from dreamprune_cli.models.registry import build_model, model_config
from tests.runkit.test_context import WARNING


@pytest.mark.slow
def test_resumed_pipeline_warns_of_nothing_the_user_did_not_set(runner, tmp_path: Path,
                                                                pair_dirs) -> None:
    torch.manual_seed(0)
    weights = save_safetensors(tmp_path / "durn.safetensors",
                               build_model("durn_s", "tiny").state_dict(), "durn_s",
                               model_config("durn_s", "tiny"))
    out = tmp_path / "run"
    inputs, targets = pair_dirs
    first = runner.invoke(app, ["pipeline", "--weights", str(weights), "--steps", "2",
                                "--flops-size", "64", "--out", str(out), "--allocator", "lamp",
                                "--eval-input-dir", str(inputs), "--eval-target-dir",
                                str(targets), "--device", "cpu", "--size", "32",
                                "--batch-size", "2"])
    assert first.exit_code == 0, first.output
    assert json.loads((out / "run.json").read_text())["settings"]["tile_overlap"] == 32
    resumed = runner.invoke(app, ["pipeline", "--resume", str(out), "--steps", "3"])
    assert resumed.exit_code == 0, resumed.output
    assert "WARNING" not in resumed.output and "ignored" not in resumed.output, resumed.output
    told = runner.invoke(app, ["pipeline", "--resume", str(out), "--steps", "4",
                               "--tile-overlap", "8"])
    assert told.exit_code == 0, told.output
    assert WARNING in told.output
