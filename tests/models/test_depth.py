"""Depth-pruned files: removed blocks recorded in metadata, rebuilt without pickle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.depth import (REMOVED_KEY, RemovedBlock, ZeroBranch,
                                         read_removed, remove_modules, removed_modules)
from dreamprune_cli.models.loading import load_model, save_model
from dreamprune_cli.prune.depth.plan import prune_depth, prune_depth_channel
from dreamprune_cli.prune.student import load_student, write_student


def test_stand_ins_compute_identity_and_zeros() -> None:
    x, res = torch.rand(1, 2, 4, 4), torch.rand(1, 2, 4, 4)
    assert RemovedBlock()(x) is x
    assert RemovedBlock()(x, res) == (x, res)
    assert torch.equal(ZeroBranch()(x), torch.zeros_like(x))


def test_remove_modules_replaces_by_name_and_refuses_unknown_ones() -> None:
    network = nn.Sequential(nn.Conv2d(2, 2, 1), nn.Sequential(nn.Conv2d(2, 2, 1)))
    remove_modules(network, {"0": "block", "1.0": "branch"})
    assert removed_modules(network) == {"0": "block", "1.0": "branch"}
    with pytest.raises(UsageError, match="no module 'nope'"):
        remove_modules(network, {"nope": "block"})
    with pytest.raises(UsageError, match="unknown removal kind 'other'"):
        remove_modules(network, {"1": "other"})


def test_a_bad_record_is_named() -> None:
    with pytest.raises(UsageError, match=f"student.safetensors: metadata {REMOVED_KEY}"):
        read_removed({REMOVED_KEY: "[1, 2]"}, "student.safetensors")
    assert read_removed({}, "x") == {}


@pytest.mark.parametrize("model, target", [("prenet", 0.67), ("gcanet", 0.7),
                                           ("durn_s", 0.8)])
def test_depth_student_round_trip_is_exact(tmp_path: Path, model: str, target: float) -> None:
    torch.manual_seed(0)
    teacher = load_model(model, variant="tiny", use_bundled=False)
    result = prune_depth(teacher, target, flops_size=32, calibration_size=32)
    paths = write_student(result.student, tmp_path)
    assert set(paths) == {"student"}  # no masks: every kept weight trains
    with safe_open(str(paths["student"]), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["dreamprune.granularity"] == "depth"
    back = load_student(paths["student"], model)
    assert back.granularity == "depth" and back.structured
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(back.adapter()(x), result.student.adapter()(x))
    assert sum(p.numel() for p in back.network.parameters()) == sum(
        p.numel() for p in result.student.network.parameters())


def test_depth_and_channel_student_round_trip_is_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    teacher = load_model("ffa", variant="tiny", use_bundled=False)
    result = prune_depth_channel(teacher, 0.2, "lamp", flops_size=32, calibration_size=32)
    assert result.granularity == "depth+channel"
    path = save_model(result.student, tmp_path / "s.safetensors")
    back = load_model(None, weights=path)
    assert back.granularity == "depth+channel"
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(back.adapter()(x), result.student.adapter()(x))
