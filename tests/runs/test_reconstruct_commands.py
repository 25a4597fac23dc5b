"""``--reconstruct`` through the CLI: refused with weight masks, recorded after a cut."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dreamprune_cli.cli import app
from dreamprune_cli.models.checkpoint import save_safetensors
from dreamprune_cli.models.loading import load_model
from dreamprune_cli.models.registry import build_model, model_config


def _prenet_weights(tmp_path: Path) -> Path:
    """A tiny random PReNet of 8 channels saved by dreamprune."""
    torch.manual_seed(0)
    config = model_config("prenet", "tiny", channels=8)
    network = build_model("prenet", "tiny", channels=8)
    return save_safetensors(tmp_path / "prenet.safetensors", network.state_dict(), "prenet",
                            config)


@pytest.mark.parametrize("command", ["prune", "pipeline"])
def test_reconstruct_with_weight_masks_is_one_usage_error(runner, tmp_path: Path,
                                                          command: str) -> None:
    weights = _prenet_weights(tmp_path)
    result = runner.invoke(app, [command, "--weights", str(weights), "--reconstruct",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "--reconstruct" in lines[0]
    assert "needs a structured --granularity" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_prune_channel_reconstruct_records_its_report(runner, tmp_path: Path) -> None:
    weights = _prenet_weights(tmp_path)
    out = tmp_path / "pruned"
    result = runner.invoke(app, ["prune", "--weights", str(weights), "--granularity", "channel",
                                 "--allocator", "lamp", "--flops-target", "0.58",
                                 "--flops-size", "32", "--reconstruct", "--reconstruct-count",
                                 "4", "--depth-calibration-size", "32", "--out", str(out),
                                 "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["details"]["reconstruction"]
    assert report["images"] == 4 and report["size"] == [32, 32]
    assert report["mse_after"] <= report["mse_before"] and report["solved"] > 0
    saved = json.loads((out / "report.json").read_text())["details"]["reconstruction"]
    assert saved["mse_after"] == report["mse_after"]
    student = load_model(None, weights=out / "student.safetensors")
    assert student.kept_channels is not None
