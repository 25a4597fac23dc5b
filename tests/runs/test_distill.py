"""``distill`` end to end through the CLI, offline on saved dreams and online."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dreamprune_cli.cli import app
from dreamprune_cli.models.loading import load_model
from tests.runs.test_commands import TINY, _ffa_weights, _prune

pytestmark = pytest.mark.slow  # whole commands, end to end (CI runs them too)


def test_distill_offline_and_online(runner, tmp_path: Path, pair_dirs) -> None:
    weights = _ffa_weights(tmp_path)
    student = _prune(runner, weights, tmp_path / "pruned")
    dreams = tmp_path / "dreams"
    assert runner.invoke(app, ["dream", "--weights", str(weights), "--save-dir", str(dreams),
                               "--count", "2", "--steps", "2", *TINY[2:]]).exit_code == 0
    zeros_before = {k: v == 0 for k, v in load_file(str(student)).items()}
    for mode, extra in (("offline", ["--dreams", str(dreams)]), ("online", [])):
        out = tmp_path / f"distilled_{mode}"
        result = runner.invoke(app, ["distill", "--model", "ffa", "--weights", str(weights),
                                     "--student", str(student), "--out", str(out),
                                     "--steps", "3", *TINY[2:], *extra, "--json"])
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        assert data["mode"] == mode and data["steps"] == 3
        for key in ("psnr_teacher", "psnr_student", "final_kd_loss", "macs_ratio"):
            assert key in data
        assert data["psnr_student_minus_teacher"] == pytest.approx(
            data["psnr_student"] - data["psnr_teacher"], abs=1e-9)
        assert data["psnr_student_minus_teacher_se"] >= 0
        state = load_file(str(out / "student.safetensors"))
        for key, was_zero in zeros_before.items():
            if key.endswith("weight") and was_zero.any():
                assert torch.all(state[key][was_zero] == 0), key
        loaded = load_model(None, weights=out / "student.safetensors")  # strict, no --model
        assert loaded.name == "ffa"
        assert (out / "metrics.json").is_file()
    missing = runner.invoke(app, ["distill", "--model", "ffa", "--out", str(tmp_path / "m")])
    assert missing.exit_code == 2 and "--student is required" in missing.output
