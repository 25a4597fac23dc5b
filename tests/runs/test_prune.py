"""``dreamprune_cli.runs.prune``: the prune run from Python: student files, channel multiple."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamprune_cli.errors import UsageError
from dreamprune_cli.runs import prune
from tests.helpers import run_settings as _settings
from tests.helpers import tiny_ffa_weights as _tiny_ffa


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
