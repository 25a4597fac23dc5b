"""dream, distill and pipeline end to end through the CLI (tiny sizes, few steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dreamprune_cli.cli import app
from dreamprune_cli.models.loading import load_model

pytestmark = pytest.mark.slow  # whole commands, end to end (CI runs them too)

TINY = ["--variant", "tiny", "--device", "cpu", "--size", "32", "--batch-size", "2"]


def _ffa_weights(tmp_path: Path) -> Path:
    """A small random FFA saved by dreamprune (so tests never depend on bundled teachers)."""
    from dreamprune_cli.models.checkpoint import save_safetensors
    from dreamprune_cli.models.registry import build_model, model_config

    config = model_config("ffa", "tiny", blocks=1)
    torch.manual_seed(0)
    network = build_model("ffa", "tiny", blocks=1)
    return save_safetensors(tmp_path / "ffa_small.safetensors", network.state_dict(), "ffa",
                            config)


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


def _prune(runner, weights: Path, out: Path) -> Path:
    result = runner.invoke(app, ["prune", "--weights", str(weights), "--flops-target", "0.6",
                                 "--allocator", "lamp", "--flops-size", "64", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / "student.safetensors"


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


def test_pipeline_end_to_end_and_resume(runner, tmp_path: Path, pair_dirs) -> None:
    weights = _ffa_weights(tmp_path)
    inputs, targets = pair_dirs
    out = tmp_path / "run"
    args = ["pipeline", "--weights", str(weights), "--flops-target", "0.58", "--steps", "4",
            "--calibration-steps", "2", "--flops-size", "64", "--out", str(out),
            "--eval-input-dir", str(inputs), "--eval-target-dir", str(targets),
            "--checkpoint-every", "2", *TINY[2:], "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("student", "macs_ratio", "psnr_teacher", "psnr_pruned", "psnr_student",
                "ssim_teacher", "ssim_student", "seconds"):
        assert key in data, key
    assert data["macs_ratio"] == pytest.approx(0.58, rel=0.005)
    assert data["psnr_student_minus_teacher"] == pytest.approx(
        data["psnr_student"] - data["psnr_teacher"], abs=1e-9)
    assert data["psnr_student_minus_teacher_se"] >= 0
    # teacher against student forward time at the MAC-counting size, in interleaved pairs
    assert data["latency_ratio"] > 0 and data["latency_teacher_s"] > 0
    for name in ("report.json", "report.md", "grid.png", "losses.png", "losses.csv",
                 "student.safetensors", "masks.safetensors", "checkpoint.pt",
                 "prune/report.json"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["allocator"] == "adaptive" and report["steps"] == 4
    assert "Student - teacher: " in (out / "report.md").read_text()
    assert "student time: " in (out / "report.md").read_text()
    assert report["latency"]["input_shape"] == [1, 3, 64, 64]
    assert report["latency"]["pairs"] >= 5
    # continuing a finished run to more steps resumes from its checkpoint
    more = runner.invoke(app, [a if a != "4" else "6" for a in args[:-1]]
                         + ["--resume", str(out), "--json"])
    assert more.exit_code == 0, more.output
    assert json.loads(more.stdout)["steps"] == 6
    busy = runner.invoke(app, args)
    assert busy.exit_code == 2 and "not empty" in busy.output
    synthetic = runner.invoke(app, args[:-1] + ["--calibration-source", "synthetic",
                                                "--overwrite", "--steps", "1", "--json"])
    assert synthetic.exit_code == 0, synthetic.output
    assert "calibration_dreams" not in json.loads(synthetic.stdout)["phases"]


def test_interrupt_maps_to_exit_130(runner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                    pair_dirs) -> None:
    import dreamprune_cli.runs.pipeline as pipeline

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run", interrupted)
    inputs, targets = pair_dirs
    result = runner.invoke(app, ["pipeline", "--weights", str(_ffa_weights(tmp_path)),
                                 "--eval-input-dir", str(inputs), "--eval-target-dir",
                                 str(targets), "--out", str(tmp_path / "r"), *TINY[2:]])
    assert result.exit_code == 130 and "interrupted" in result.output


@pytest.mark.parametrize("name", ["prenet", "gcanet"])
def test_pipeline_on_the_real_families(runner, tmp_path: Path, name: str) -> None:
    """The whole method on tiny PReNet (recurrent, multi-output) and GCANet (4-channel input
    of its own): MACs are counted on what the bare network receives, the student meets the
    target and reloads from its file alone."""
    from dreamprune_cli.models.checkpoint import save_safetensors
    from dreamprune_cli.models.registry import build_model, model_config

    torch.manual_seed(0)
    weights = save_safetensors(tmp_path / f"{name}.safetensors",
                               build_model(name, "tiny").state_dict(), name,
                               model_config(name, "tiny"))
    out = tmp_path / "run"
    result = runner.invoke(app, ["--json", "pipeline", "--model", name, "--weights", str(weights),
                                 "--flops-target", "0.6", "--steps", "2",
                                 "--calibration-steps", "1", "--round-steps", "1",
                                 "--out", str(out), *TINY[2:]])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["macs_ratio"] == pytest.approx(0.6, abs=0.005)
    student = load_model(None, weights=out / "student.safetensors")
    assert student.name == name
