"""bench/recovery.py's levers: every setting a lever names is one the API takes."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import sys
from pathlib import Path

import pytest

from dreamprune_cli import distill
from dreamprune_cli.engine.dream import DreamSchedule

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "recovery.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(SCRIPT.parent))  # it imports real_table1 beside it
    spec = importlib.util.spec_from_file_location("recovery", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["recovery"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_every_lever_setting_is_a_distill_keyword_or_a_bench_knob(bench) -> None:
    keywords = set(inspect.signature(distill).parameters)
    dreaming = {f.name for f in dataclasses.fields(DreamSchedule)}
    for name, settings in bench.LEVERS.items():
        knobs = {"reconstruct", "reconstruct_count", "reconstruct_size", "reconstruct_prior",
                 "reconstruct_ridge", "student_lr_factor"}
        unknown = set(settings) - keywords - dreaming - knobs
        assert not unknown, f"lever {name}: {sorted(unknown)}"


def test_reports_become_json_ready(bench) -> None:
    @dataclasses.dataclass
    class Report:
        layers: tuple[str, ...]
        seconds: float
        path: Path

    assert bench._jsonable(Report(("a", "b"), 1.5, Path("x"))) == \
        {"layers": ["a", "b"], "seconds": 1.5, "path": "x"}


def test_photos_lever_records_its_folder_files(bench, tmp_path: Path) -> None:
    for name in ("b.png", "a.jpg"):
        (tmp_path / name).write_bytes(b"x")
    assert bench._photos_field("photos", tmp_path) == {"photos": ["a.jpg", "b.png"]}
    assert bench._photos_field("synthetic", tmp_path) == {}
    assert bench._photos_field("photos", None) == {}
