"""Issue 32 item 6: the teacher's scores are cached by weights, evaluation files and
protocol, reused by the next pipeline run, refused with --no-cache, invalidated by a changed
target file."""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import pytest
import torch

from dreamprune_cli.engine.evaluate import EvaluationResult, ImageScore
from dreamprune_cli.engine.score_cache import cache_dir, result_from_dict, teacher_scores
from dreamprune_cli.fileio import to_jsonable
from dreamprune_cli.models.checkpoint import save_safetensors
from dreamprune_cli.models.registry import build_model, model_config
from dreamprune_cli.runs import pipeline
from dreamprune_cli.settings import resolve_settings

CPU = torch.device("cpu")


def _tiny_ffa(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_safetensors(tmp_path / "ffa.safetensors",
                            build_model("ffa", "tiny", blocks=1).state_dict(), "ffa",
                            model_config("ffa", "tiny", blocks=1))


def _run(tmp_path: Path, weights: Path, pairs: tuple[Path, Path], out: str, monkeypatch,
         **values: object) -> tuple[dict, int]:
    """One tiny pipeline run; returns its report.json and how many evaluations ran."""
    calls = []
    real = pipeline.evaluate_pairs

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "evaluate_pairs", counted)
    where = {"resume": tmp_path / out} if values.pop("resume", False) else \
        {"out": tmp_path / out}
    pipeline.run(resolve_settings(
        {"device": "cpu", "threads": 1, "model": "ffa", "weights": weights,
         "flops_target": 0.6, "allocator": "lamp", "flops_size": 64, "steps": 1,
         "round_steps": 1, "batch_size": 2, "size": 32, **where,
         "eval_input_dir": pairs[0], "eval_target_dir": pairs[1], **values}, env={}))
    return json.loads((tmp_path / out / "report.json").read_text()), len(calls)


@pytest.mark.slow
def test_second_run_reuses_the_teacher_scores(tmp_path: Path, pair_dirs, monkeypatch,
                                              caplog) -> None:
    monkeypatch.setenv("DREAMPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    weights = _tiny_ffa(tmp_path)
    first, calls = _run(tmp_path, weights, pair_dirs, "one", monkeypatch)
    assert calls == 3 and first["teacher_scores_cache"]["hit"] is False
    entry = Path(first["teacher_scores_cache"]["path"])
    assert entry.parent == tmp_path / "cache" / "teacher-scores" and entry.is_file()

    caplog.set_level(logging.INFO, logger="dreamprune_cli")
    second, calls = _run(tmp_path, weights, pair_dirs, "two", monkeypatch)
    assert calls == 2  # pruned and student only: the teacher was not scored
    assert second["teacher_scores_cache"]["hit"] is True
    assert f"teacher scores reused from {entry} (computed " in caplog.text
    assert second["teacher"]["per_image"] == first["teacher"]["per_image"]
    assert second["psnr_teacher"] == first["psnr_teacher"]
    assert second["teacher"]["macs_256"] == first["teacher"]["macs_256"]
    assert (tmp_path / "two" / "grid.png").is_file()  # the teacher's column restored again

    caplog.clear()
    resumed, calls = _run(tmp_path, weights, pair_dirs, "one", monkeypatch, resume=True,
                          steps=2)
    assert calls == 2 and resumed["teacher_scores_cache"]["hit"] is True
    assert resumed["resumed"] is True and "teacher scores reused from" in caplog.text

    refused, calls = _run(tmp_path, weights, pair_dirs, "three", monkeypatch, teacher_cache=False)
    assert calls == 3 and refused["teacher_scores_cache"]["hit"] is False

    target = sorted(pair_dirs[1].iterdir())[0]
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    changed, calls = _run(tmp_path, weights, pair_dirs, "four", monkeypatch)
    assert calls == 3 and changed["teacher_scores_cache"]["hit"] is False
    assert Path(changed["teacher_scores_cache"]["path"]) != entry


def test_scores_survive_a_json_round_trip() -> None:
    result = EvaluationResult(metric_space="y", crop_border=2, count=2, psnr=math.inf,
                              ssim=0.9, seconds=1.5, macs=10, macs_256=20, params=30,
                              params_nonzero=25, tile=64, tile_overlap=8,
                              per_image=[ImageScore("1", math.inf, 1.0),
                                         ImageScore("2", 30.25, 0.8)])
    back = result_from_dict(json.loads(json.dumps(to_jsonable(result.as_dict()))))
    assert back == result


def test_no_weights_file_no_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DREAMPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    made = []

    def evaluate() -> EvaluationResult:
        made.append(1)
        return EvaluationResult("rgb", 0, 1, 30.0, 0.9, 0.1, 1, 1, 1, 1)

    for _ in range(2):  # random weights: scored every time, nothing written
        _, cached = teacher_scores(evaluate, torch.nn.Identity(), None, "ffa", {}, [], {}, None,
                                   CPU, enabled=True, writer=True)
        assert cached.hit is False and cached.path is None
    assert len(made) == 2 and not (tmp_path / "cache").exists()


def test_cache_dir_order(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DREAMPRUNE_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache_dir() == tmp_path / "home" / ".cache" / "dreamprune"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "dreamprune"
    monkeypatch.setenv("DREAMPRUNE_CACHE", str(tmp_path / "project"))
    assert cache_dir() == tmp_path / "project"
    monkeypatch.setenv("DREAMPRUNE_CACHE_DIR", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"


def test_no_cache_flag_sets_the_field() -> None:
    assert resolve_settings({}, env={}).settings.pipeline.teacher_cache is True
    assert resolve_settings({"teacher_cache": False},
                            env={}).settings.pipeline.teacher_cache is False
    assert resolve_settings({}, env={"DREAMPRUNE_TEACHER_CACHE": "0"}
                            ).settings.pipeline.teacher_cache is False


def test_no_cache_flag_reaches_the_run(runner, monkeypatch) -> None:
    from dreamprune_cli.cli import app

    seen = {}

    def stop(resolved, progress=None):  # the settings the run gets; no work
        seen["cache"] = resolved.settings.pipeline.teacher_cache
        raise SystemExit(0)

    monkeypatch.setattr(pipeline, "run", stop)
    runner.invoke(app, ["pipeline", "--model", "ffa", "--random-weights", "--no-cache"])
    assert seen == {"cache": False}
