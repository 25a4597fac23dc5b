"""``dreamprune synth``: layout, determinism, errors (the synthetic pair API:
``tests/data/test_synthetic.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamprune_cli.cli import app
from tests.conftest import save_rgb
from tests.helpers import folder_bytes as _files


@pytest.mark.parametrize("task", ["derain", "raindrop", "dehaze"])
def test_synth_writes_valid_pairs(runner, tmp_path: Path, task: str) -> None:
    out = tmp_path / task
    result = runner.invoke(app, ["synth", "--task", task, "--count", "3", "--size", "32",
                                 "--seed", "1", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["task"] == task and data["count"] == 3 and data["size"] == 32
    inputs = sorted(p.name for p in (out / "input").iterdir())
    targets = sorted(p.name for p in (out / "target").iterdir())
    assert inputs == targets == ["0000.png", "0001.png", "0002.png"]
    differs = 0
    for name in inputs:
        with Image.open(out / "input" / name) as a, Image.open(out / "target" / name) as b:
            assert a.mode == b.mode == "RGB" and a.size == b.size == (32, 32)
            differs += int(np.abs(np.asarray(a, float) - np.asarray(b, float)).max() > 0)
    assert differs >= 2  # degraded inputs differ from their targets
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task"] == task and manifest["seed"] == 1
    assert [image["name"] for image in manifest["images"]] == ["0000", "0001", "0002"]
    assert all(image["params"] for image in manifest["images"])


def test_synth_same_seed_same_bytes(runner, tmp_path: Path) -> None:
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        result = runner.invoke(app, ["synth", "--task", "derain", "--count", "2", "--size",
                                     "24", "--seed", seed, "--out", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
    a, b, c = (_files(tmp_path / name) for name in "abc")
    assert a == b
    assert a["input/0000.png"] != c["input/0000.png"]


@pytest.mark.parametrize("args, message", [
    (["--task", "snow"], "task"),
    (["--task", "derain", "--count", "0"], "count"),
    (["--task", "derain", "--size", "4"], "size"),
    (["--task", "derain", "--seed", "-1"], "seed"),
    ([], "--task is required"),
    (["--task", "derain", "--clean-dir", "/nonexistent/dir"], "--clean-dir"),
])
def test_synth_bad_arguments_exit_2_one_line(runner, tmp_path: Path, args: list[str],
                                             message: str) -> None:
    result = runner.invoke(app, ["synth", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "out" / "input").exists()


def test_synth_needs_out_and_refuses_non_empty(runner, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["synth", "--task", "dehaze"])
    assert missing.exit_code == 2 and "--out is required" in missing.output
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    refused = runner.invoke(app, ["synth", "--task", "dehaze", "--count", "1", "--size", "16",
                                  "--out", str(out)])
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert not (out / "input").exists()
    allowed = runner.invoke(app, ["synth", "--task", "dehaze", "--count", "1", "--size", "16",
                                  "--out", str(out), "--overwrite"])
    assert allowed.exit_code == 0, allowed.output
    assert (out / "keep.txt").read_text() == "mine" and (out / "input" / "0000.png").is_file()


def test_synth_clean_dir_uses_folder_content(runner, tmp_path: Path) -> None:
    save_rgb(tmp_path / "clean" / "flat.png", np.full((40, 40, 3), 0.3))
    out = tmp_path / "out"
    result = runner.invoke(app, ["synth", "--task", "dehaze", "--count", "2", "--size", "16",
                                 "--out", str(out), "--clean-dir", str(tmp_path / "clean")])
    assert result.exit_code == 0, result.output
    with Image.open(out / "target" / "0001.png") as target:
        assert (np.asarray(target) == round(0.3 * 255)).all()
    assert json.loads((out / "manifest.json").read_text())["clean"] == str(tmp_path / "clean")
