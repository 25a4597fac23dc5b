"""``dream`` end to end through the CLI: the dream folder, bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from dreamprune_cli.cli import app
from tests.runs.test_commands import TINY, _ffa_weights

pytestmark = pytest.mark.slow  # whole commands, end to end (CI runs them too)


def test_dream_writes_folder(runner, tmp_path: Path) -> None:
    weights = _ffa_weights(tmp_path)
    out = tmp_path / "dreams"
    args = ["dream", "--weights", str(weights), "--save-dir", str(out), "--count", "3",
            "--steps", "3", *TINY[2:], "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("final_dream_loss", "final_orth_loss", "diversity_mean_cosine", "seed",
                "versions", "settings", "psnr_dream_vs_clean"):
        assert key in data, key
    assert data["settings"]["lambda_tv"] == 0.1  # the FFA preset's image terms, recorded
    names = sorted(p.name for p in out.iterdir())
    assert names == ["dream_000.png", "dream_001.png", "dream_002.png", "dreams.safetensors",
                     "grid.png", "losses.csv", "losses.png", "manifest.json", "run.json"]
    tensors = load_file(str(out / "dreams.safetensors"))
    assert tensors["dreams"].shape == (3, 3, 32, 32) and tensors["clean"].shape == (3, 3, 32, 32)
    assert 0.0 <= float(tensors["dreams"].min()) and float(tensors["dreams"].max()) <= 1.0
    assert len((out / "losses.csv").read_text().splitlines()) == 1 + 2 * 3  # 2 batches x 3
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "not empty" in again.output
    done = runner.invoke(app, args[:5] + ["--resume", str(out)] + args[5:])
    assert done.exit_code == 2 and "already complete" in done.output


def test_dream_bad_arguments(runner, tmp_path: Path) -> None:
    missing = runner.invoke(app, ["dream", "--variant", "tiny"])
    assert missing.exit_code == 2 and "--save-dir is required" in missing.output
    bad = runner.invoke(app, ["dream", "--save-dir", str(tmp_path / "x"), "--count", "0"])
    assert bad.exit_code == 2 and "count" in bad.output
    orth = runner.invoke(app, ["dream", "--save-dir", str(tmp_path / "x"),
                               "--representation", "fft"])
    assert orth.exit_code == 2 and "representation" in orth.output
    tv = runner.invoke(app, ["dream", "--save-dir", str(tmp_path / "x"), "--lambda-tv", "-0.1"])
    assert tv.exit_code == 2 and "lambda_tv" in tv.output
    assert not (tmp_path / "x").exists()
