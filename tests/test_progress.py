"""``dreamprune_cli.progress``: the sink contract, the silent sink, a sink as the engine calls it."""

from __future__ import annotations

from pathlib import Path

from dreamprune_cli.data.synthetic import write_synthetic_set
from dreamprune_cli.progress import NullProgress, ProgressSink


class Recorder:
    """A sink that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, phase: str, total: int | None, unit: str = "steps") -> None:
        self.calls.append(("start", phase, total, unit))

    def update(self, completed: int, **fields: float | str) -> None:
        self.calls.append(("update", completed, fields))

    def finish(self) -> None:
        self.calls.append(("finish",))


def test_null_progress_takes_every_call_and_reports_nothing() -> None:
    sink: ProgressSink = NullProgress()
    assert sink.start("phase", None) is None
    assert sink.start("phase", 3, "images") is None
    assert sink.update(3, loss=0.5, note="x") is None
    assert sink.finish() is None


def test_a_phase_is_started_updated_per_step_and_finished(tmp_path: Path) -> None:
    sink = Recorder()
    write_synthetic_set("derain", 2, 16, 0, tmp_path / "set", progress=sink)
    assert sink.calls == [("start", "synth derain", 2, "images"), ("update", 1, {}),
                          ("update", 2, {}), ("finish",)]
