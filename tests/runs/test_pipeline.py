"""``pipeline`` end to end (tiny sizes, few steps): its files, resume, the result's views, the
families with inputs and outputs of their own, Ctrl-C."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dreamprune_cli.cli import app
from dreamprune_cli.models.loading import load_model
from tests.runs.test_commands import TINY, _ffa_weights
from tests.runs.test_runs import _settings, _tiny_ffa

pytestmark = pytest.mark.slow  # whole commands, end to end (CI runs them too)


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


@pytest.mark.slow
def test_pipeline_run_table_report_and_json_are_one_result(tmp_path: Path, pair_dirs) -> None:
    from dreamprune_cli.runs import pipeline

    inputs, targets = pair_dirs
    result = pipeline.run(_settings(
        model="ffa", weights=_tiny_ffa(tmp_path), flops_target=0.6, allocator="lamp",
        flops_size=64, steps=2, round_steps=1, batch_size=2, size=32, out=tmp_path / "run",
        eval_input_dir=inputs, eval_target_dir=targets))
    table = result.table()
    assert [row[0] for row in table.rows] == ["teacher", "pruned (no distillation)",
                                              "dream + distill"]
    assert table.rows[2][1] == result.summary()["psnr_student"]
    report_md = (tmp_path / "run" / "report.md").read_text()
    assert table.markdown() in report_md
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["psnr_student"] == pytest.approx(result.student.psnr)
    assert (tmp_path / "run" / "prune" / "student.safetensors").is_file()


def test_prune_only_scores_the_pruned_student_without_training(runner, tmp_path: Path,
                                                                pair_dirs) -> None:
    """--prune-only: the student is the pruned one, scored once; no training files; the
    table has no distilled row; an explicit --steps beside it is refused before any work."""
    weights = _ffa_weights(tmp_path)
    inputs, targets = pair_dirs
    out = tmp_path / "run"
    args = ["pipeline", "--weights", str(weights), "--flops-target", "0.58",
            "--allocator", "lamp", "--flops-size", "64", "--out", str(out),
            "--eval-input-dir", str(inputs), "--eval-target-dir", str(targets), *TINY[2:],
            "--prune-only"]
    refused = runner.invoke(app, [*args, "--steps", "3"])
    assert refused.exit_code == 2 and "--prune-only" in refused.output
    assert "--steps 3 (from flag --steps)" in refused.output and not out.exists()
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["prune_only"] is True and data["steps"] == 0
    assert data["psnr_student"] == data["psnr_pruned"]
    assert "evaluate_student" not in data["phases"]
    for name in ("checkpoint.pt", "losses.csv", "losses.png", "dreams.png"):
        assert not (out / name).exists(), name
    for name in ("student.safetensors", "grid.png", "report.md", "prune/student.safetensors"):
        assert (out / name).is_file(), name
    pruned = load_model(None, weights=out / "prune" / "student.safetensors")
    student = load_model(None, weights=out / "student.safetensors")
    for (name, a), b in zip(pruned.network.state_dict().items(),
                            student.network.state_dict().values()):
        assert torch.equal(a, b), name
    report_md = (out / "report.md").read_text()
    assert "no dreaming or distillation (--prune-only)" in report_md
    assert "losses.png" not in report_md and "dream + distill" not in report_md
    assert "Columns of grid.png: input | teacher | student (pruned) | target." in report_md
    record = json.loads((out / "run.json").read_text())["settings"]
    assert record["prune_only"] is True and record["steps"] >= 1
    again = runner.invoke(app, ["pipeline", "--resume", str(out), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["psnr_student"] == data["psnr_student"]


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
                                 "--flops-target", "0.6", "--steps", "2", "--no-prune-only",
                                 "--calibration-steps", "1", "--round-steps", "1",
                                 "--out", str(out), *TINY[2:]])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["macs_ratio"] == pytest.approx(0.6, abs=0.005)
    student = load_model(None, weights=out / "student.safetensors")
    assert student.name == name
    # both presets repair their (masked) students by least squares at prune time
    details = json.loads((out / "report.json").read_text())["prune"]["details"]
    assert details["reconstruction"]["mse_after"] <= details["reconstruction"]["mse_before"]


def test_the_report_words_cover_every_input_source() -> None:
    """Each input source the settings accept has its row label, its words in report.md and
    its dreams.png caption."""
    from typing import get_args

    from dreamprune_cli.engine.inputs import INPUTS
    from dreamprune_cli.runs.pipeline import DREAM_GRID_ROWS, INPUT_WORDS, STUDENT_ROWS
    from dreamprune_cli.settings import DistillSettings

    assert get_args(DistillSettings.model_fields["inputs"].annotation) == INPUTS
    for words in (STUDENT_ROWS, INPUT_WORDS, DREAM_GRID_ROWS):
        assert tuple(words) == INPUTS
