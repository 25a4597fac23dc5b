"""``--reconstruct`` through the CLI: recorded after a cut, and after weight masks (kept)."""

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


@pytest.mark.slow
def test_prune_unstructured_reconstruct_keeps_the_masks(runner, tmp_path: Path) -> None:
    weights = _prenet_weights(tmp_path)
    plain, repaired = tmp_path / "plain", tmp_path / "repaired"
    common = ["prune", "--weights", str(weights), "--allocator", "lamp", "--flops-target",
              "0.58", "--flops-size", "32", "--json"]
    assert runner.invoke(app, [*common, "--no-reconstruct", "--out", str(plain)]).exit_code == 0
    result = runner.invoke(app, [*common, "--reconstruct", "--reconstruct-count", "4",
                                 "--reconstruct-size", "32", "--out", str(repaired)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["details"]["reconstruction"]
    assert report["mse_after"] <= report["mse_before"] and report["solved"] > 0
    before = load_model(None, weights=plain / "student.safetensors")
    after = load_model(None, weights=repaired / "student.safetensors")
    assert after.granularity == "unstructured"
    weights_before = dict(before.network.named_parameters())
    for name, value in after.network.state_dict().items():  # the same zeros, other weights
        if name.endswith("weight") and value.dim() == 4:
            assert torch.equal(value == 0, before.network.state_dict()[name] == 0), name
    assert weights_before  # the student has parameters to compare


@pytest.mark.slow
def test_prune_channel_reconstruct_records_its_report(runner, tmp_path: Path) -> None:
    weights = _prenet_weights(tmp_path)
    out = tmp_path / "pruned"
    result = runner.invoke(app, ["prune", "--weights", str(weights), "--granularity", "channel",
                                 "--allocator", "lamp", "--flops-target", "0.58",
                                 "--flops-size", "32", "--reconstruct", "--reconstruct-count",
                                 "4", "--reconstruct-size", "24", "--reconstruct-ridge", "0.1",
                                 "--depth-calibration-size", "32", "--out", str(out),
                                 "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)["details"]["reconstruction"]
    assert report["images"] == 4 and report["size"] == [24, 24] and report["ridge"] == 0.1
    assert report["mse_after"] <= report["mse_before"] and report["solved"] > 0
    saved = json.loads((out / "report.json").read_text())["details"]["reconstruction"]
    assert saved["mse_after"] == report["mse_after"]
    student = load_model(None, weights=out / "student.safetensors")
    assert student.kept_channels is not None
