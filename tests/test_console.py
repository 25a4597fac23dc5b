"""Output off a terminal: periodic plain progress lines, tables that never cut data."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from rich.console import Console

from dreamprune_cli.cli import app
from dreamprune_cli.console import (LogProgress, Ui, format_duration, make_table,
                                    progress_interval)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_format_duration() -> None:
    assert format_duration(0) == "0:00"
    assert format_duration(75.4) == "1:15"
    assert format_duration(3725) == "1:02:05"


def test_log_progress_lines_at_a_steady_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    progress = LogProgress(interval=30.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="dreamprune_cli"):
        progress.start("dream+distill", 400)
        progress.update(0)                       # baseline at t = 0
        for step in range(1, 401):              # 0.25 s per step
            clock.now += 0.25
            progress.update(step, dream=0.05, kd=0.0125)
        progress.finish()
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "dream+distill: started (400 steps)"
    assert lines[-1] == "dream+distill: done, 400 steps in 1:40"
    periodic = lines[1:-1]
    # a line every 30 s of a 100 s phase: at 30, 60 and 90 s (steps 120, 240, 360)
    assert periodic == [
        "dream+distill: step 120/400 (30%), dream=0.05 kd=0.0125, elapsed 0:30, left 1:10",
        "dream+distill: step 240/400 (60%), dream=0.05 kd=0.0125, elapsed 1:00, left 0:40",
        "dream+distill: step 360/400 (90%), dream=0.05 kd=0.0125, elapsed 1:30, left 0:10",
    ]


def test_log_progress_time_left_ignores_steps_before_a_resume(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    progress = LogProgress(interval=10.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="dreamprune_cli"):
        progress.start("dream+distill", 100)
        progress.update(50)                      # resumed at step 50
        for step in range(51, 61):              # 1 s per step
            clock.now += 1.0
            progress.update(step)
    assert caplog.records[-1].getMessage() == \
        "dream+distill: step 60/100 (60%), elapsed 0:10, left 0:40"
    with caplog.at_level(logging.INFO, logger="dreamprune_cli"):
        progress.finish()  # e.g. Ctrl-C: not "done"
    assert caplog.records[-1].getMessage() == "dream+distill: stopped at step 60 of 100 after 0:10"


def test_progress_interval_from_environment() -> None:
    assert progress_interval({}) == 30.0
    assert progress_interval({"DREAMPRUNE_PROGRESS_INTERVAL": "5"}) == 5.0
    assert progress_interval({"DREAMPRUNE_PROGRESS_INTERVAL": "-1"}) == 30.0
    assert progress_interval({"DREAMPRUNE_PROGRESS_INTERVAL": "soon"}) == 30.0


def test_cli_progress_lines_without_a_terminal(runner, tmp_path: Path) -> None:
    """The real command, stderr not a terminal, interval 0: a line per step, plain text."""
    result = runner.invoke(app, ["dream", "--model", "ffa", "--variant", "tiny",
                                 "--save-dir", str(tmp_path / "d"), "--count", "2",
                                 "--batch-size", "2", "--steps", "3", "--size", "32",
                                 "--device", "cpu", "--threads", "1"],
                           env={"DREAMPRUNE_PROGRESS_INTERVAL": "0"})
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "dream: step" in line]
    assert [line.split(" INFO ")[1].split(",")[0] for line in lines] == \
        ["dream: step 1/3 (33%)", "dream: step 2/3 (67%)", "dream: step 3/3 (100%)"]
    assert "elapsed" in lines[-1] and "dream=" in lines[-1]


def test_table_not_cut_off_a_terminal() -> None:
    out = io.StringIO()
    ui = Ui(stdout=Console(file=out, width=30), stderr=Console(file=io.StringIO()))
    ui.print_table(make_table("t", ["name", "params"],
                              [["a_rather_long_model_name", 10_176_964]]))
    text = out.getvalue()
    assert "a_rather_long_model_name" in text and "10,176,964" in text and "…" not in text


def test_table_wraps_on_a_narrow_terminal() -> None:
    out = io.StringIO()
    ui = Ui(stdout=Console(file=out, width=24, force_terminal=True, color_system=None),
            stderr=Console(file=io.StringIO()))
    ui.print_table(make_table("t", ["name", "params"],
                              [["a_rather_long_model_name", 10_176_964]]))
    text = out.getvalue()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 24
    body = [line.split("│")[1:3] for line in text.splitlines() if line.startswith("│")]
    assert "".join(cells[0].strip() for cells in body) == "a_rather_long_model_name"
    assert "".join(cells[1].strip() for cells in body) == "10,176,964"


def test_models_table_complete_when_piped(runner) -> None:
    result = runner.invoke(app, ["models"], env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    for text in ("durn_s_p", "10,176,964", "88,669,702", "outputs[-1]", "raindrop"):
        assert text in result.stdout, text


def test_prune_layer_table_complete_when_piped(runner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["prune", "--model", "ffa", "--variant", "tiny",
                                 "--flops-target", "0.7", "--allocator", "uniform",
                                 "--flops-size", "32", "--out", str(tmp_path / "p")],
                           env={"COLUMNS": "40"})
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "p" / "report.json").read_text())
    names = [layer["name"] for layer in report["layers"]]
    assert "…" not in result.output
    longest = max(names, key=len)
    assert len(longest) > 8 and longest in result.output


def test_log_progress_names_the_phase_unit(caplog: pytest.LogCaptureFixture) -> None:
    """A phase that counts images (``synth``) or pairs says so, not "steps"."""
    clock = FakeClock()
    progress = LogProgress(interval=1.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="dreamprune_cli"):
        progress.start("synth derain", 4, "images")
        progress.update(0)
        clock.now += 2.0
        progress.update(2)
        progress.finish()
        progress.start("evaluate", 3, "pairs")
        progress.update(1)
        progress.finish()
    assert [r.getMessage() for r in caplog.records] == [
        "synth derain: started (4 images)",
        "synth derain: image 2/4 (50%), elapsed 0:02, left 0:02",
        "synth derain: stopped at image 2 of 4 after 0:02",
        "evaluate: started (3 pairs)",
        "evaluate: stopped at pair 1 of 3 after 0:00",
    ]
