"""Issue 32 item 3: warnings that a setting is ignored speak only of settings the user set
(flag, environment, config file), never of a default, a preset or a resumed run's record."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from dreamprune_cli.cli import app
from dreamprune_cli.models.checkpoint import save_safetensors
from dreamprune_cli.models.registry import build_model, get_model_info, model_config
from dreamprune_cli.run_record import RunRecord
from dreamprune_cli.runkit.context import scoring
from dreamprune_cli.settings import resolve_settings

WARNING = "--tile-overlap is only used with --tile; ignored"


def _warnings(caplog: pytest.LogCaptureFixture, resolved) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        scoring(resolved, get_model_info("ffa"))
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_tile_overlap_warning_only_when_the_user_set_it(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    record = RunRecord(tmp_path / "run.json", "pipeline", {"tile_overlap": 32, "tile": None})
    resumed = resolve_settings({}, env={}, run_record=record)
    assert resumed.sources["tile_overlap"].startswith("run ")
    assert not resumed.user_set("tile_overlap")
    assert _warnings(caplog, resumed) == []
    assert _warnings(caplog, resolve_settings({}, env={})) == []  # the default
    config = tmp_path / "c.toml"
    config.write_text("[evaluate]\ntile_overlap = 8\n")
    for chosen in (resolve_settings({"tile_overlap": 16}, env={}),
                   resolve_settings({}, env={"DREAMPRUNE_TILE_OVERLAP": "16"}),
                   resolve_settings({}, config=config, env={}),
                   resolve_settings({"tile_overlap": 16}, env={}, run_record=record)):
        assert _warnings(caplog, chosen) == [WARNING]


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
