"""bench/benchkit.py: the helpers the benchmark scripts share (rows, marked sections, load)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "benchkit.py"


@pytest.fixture(scope="module")
def kit():
    spec = importlib.util.spec_from_file_location("benchkit", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_rows_round_trip_in_order_and_missing_file_is_empty(kit, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "rows.jsonl"
    assert kit.read_rows(path) == []
    kit.append_row({"a": 1}, path)
    kit.append_row({"b": [2.5, None]}, path)
    assert path.read_text() == '{"a": 1}\n{"b": [2.5, null]}\n'
    path.write_text(path.read_text() + "\n")  # a blank line is skipped
    assert kit.read_rows(path) == [{"a": 1}, {"b": [2.5, None]}]


def test_a_malformed_row_raises(kit, tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(json.JSONDecodeError):
        kit.read_rows(path)


def test_write_section_appends_then_replaces_between_markers(kit, tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    start, end = "<!-- x:start -->", "<!-- x:end -->"
    kit.write_section(f"{start}\none\n{end}\n", path, start, end)
    assert path.read_text() == f"# Results\n\n{start}\none\n{end}\n"
    path.write_text(path.read_text() + "\n## Later\n")
    kit.write_section(f"{start}\ntwo\n{end}\n", path, start, end)
    assert path.read_text() == f"# Results\n\n{start}\ntwo\n{end}\n\n## Later\n"
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed


def test_load_is_three_numbers_or_none_and_uptime_a_line(kit) -> None:
    load = kit.load_average()
    assert load is None or (len(load) == 3 and all(value >= 0 for value in load))
    one = kit.load_1min()
    assert (one is None) == (load is None) and (one is None or one >= 0)
    line = kit.uptime()
    assert isinstance(line, str) and line and "\n" not in line
