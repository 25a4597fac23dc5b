"""Issue 32: the pipeline estimates its whole time before the work, and its progress line
carries the run's time left (``eta``)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import torch

from dreamprune_cli.models.checkpoint import save_safetensors
from dreamprune_cli.models.registry import build_model, model_config
from dreamprune_cli.runkit.estimate import EtaProgress, RunEstimate, minutes
from dreamprune_cli.runs import pipeline
from dreamprune_cli.settings import resolve_settings


def test_estimate_line_from_hand_values() -> None:
    # 400 steps at 1.8 s = 720 s, evaluations 150 + 159 = 309 s, calibration 39 s: 1068 s
    estimate = RunEstimate(steps=400, seconds_per_step=1.8, evaluation_before=150.0,
                           evaluation_after=159.0, other_seconds=39.0)
    assert estimate.total == pytest.approx(1068.0)
    assert estimate.describe() == ("estimated time: ~18 min (400 joint steps at 1.80 s/step, "
                                   "evaluations ~309 s)")
    assert minutes(24.0) == "~0.4 min" and minutes(600.0) == "~10 min"


class _Recorder:
    def __init__(self) -> None:
        self.updates: list[tuple[int, dict]] = []

    def start(self, phase: str, total: int | None, unit: str = "steps") -> None:
        pass

    def update(self, completed: int, **fields: float | str) -> None:
        self.updates.append((completed, fields))

    def finish(self) -> None:
        pass


def test_progress_gets_the_runs_time_left() -> None:
    times = iter([100.0, 102.0, 104.0])
    inner = _Recorder()
    progress = EtaProgress(inner, "dream+distill", after=44.0, clock=lambda: next(times))
    progress.start("dream+distill", 10)
    progress.update(1, kd=0.5)
    progress.update(2, kd=0.4)  # 2 s per step: 8 steps left = 16 s, + 44 s of evaluation
    assert inner.updates[0] == (1, {"kd": 0.5})
    assert inner.updates[1] == (2, {"kd": 0.4, "eta": "~1.0 min"})
    progress.start("evaluate", 3)
    progress.update(1, psnr=30.0)  # other phases pass through
    assert inner.updates[2] == (1, {"psnr": 30.0})


def _tiny_ffa(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_safetensors(tmp_path / "ffa.safetensors",
                            build_model("ffa", "tiny", blocks=1).state_dict(), "ffa",
                            model_config("ffa", "tiny", blocks=1))


@pytest.mark.slow
def test_pipeline_logs_its_estimate_and_keeps_its_numbers(tmp_path: Path, pair_dirs, caplog,
                                                          monkeypatch) -> None:
    weights = _tiny_ffa(tmp_path)

    def run(out: str) -> dict:
        pipeline.run(resolve_settings(
            {"device": "cpu", "threads": 1, "model": "ffa", "weights": weights,
             "flops_target": 0.6, "allocator": "lamp", "flops_size": 64, "steps": 2,
             "round_steps": 1, "batch_size": 2, "size": 32, "out": tmp_path / out,
             "eval_input_dir": pair_dirs[0], "eval_target_dir": pair_dirs[1],
             "teacher_cache": False}, env={}))
        return json.loads((tmp_path / out / "report.json").read_text())

    caplog.set_level(logging.INFO, logger="dreamprune_cli")
    timed = run("timed")
    line = re.search(r"estimated time: ~(\d+(?:\.\d)?) min \(2 joint steps at (\d+\.\d\d) "
                     r"s/step, evaluations ~(\d+) s\)", caplog.text)
    assert line is not None, caplog.text
    assert float(line.group(2)) > 0

    # the throwaway steps draw from their own generator: the run's numbers are the same
    monkeypatch.setattr(pipeline, "estimate_pipeline",
                        lambda *args: RunEstimate(2, 1.0, 1.0, 1.0))
    untimed = run("untimed")
    assert untimed["psnr_student"] == timed["psnr_student"]
    assert untimed["distilled"]["per_image"] == timed["distilled"]["per_image"]
