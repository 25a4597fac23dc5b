"""``dreamprune_cli.run_record``: the recorded settings of a run, read back, checked on resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamprune_cli import __version__
from dreamprune_cli.errors import UsageError
from dreamprune_cli.run_record import (RECORD_NAME, check_run_folder, read_run_record,
                                       record_settings, same_value, write_run_record)


def test_record_keeps_defining_and_carried_fields_with_absolute_paths(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    values = {"model": "ffa", "weights": Path("w.safetensors"), "steps": 5, "seed": 0,
              "exclude": ("a*", Path("b")), "quiet": True, "flops_target": 0.5}
    assert record_settings("dream", values) == {"model": "ffa", "seed": 0, "steps": 5,
                                                "weights": str(tmp_path / "w.safetensors")}
    pipeline = record_settings("pipeline", values)
    assert pipeline["exclude"] == ["a*", str(tmp_path / "b")] and "quiet" not in pipeline
    assert pipeline["flops_target"] == 0.5
    assert same_value(Path("w.safetensors"), str(tmp_path / "w.safetensors"))
    assert not same_value(1, 2)


def test_written_record_reads_back(tmp_path: Path) -> None:
    path = write_run_record(tmp_path, "pipeline", {"model": "ffa", "steps": 4},
                            {"prune": 1.5})
    assert path == tmp_path / RECORD_NAME
    assert json.loads(path.read_text())["dreamprune"] == __version__
    record = read_run_record(tmp_path, "pipeline")
    assert record is not None and record.settings == {"model": "ffa", "steps": 4}
    assert record.phases == {"prune": 1.5} and record.locked == ("model",)  # steps is carried
    (tmp_path / "older").mkdir()
    assert read_run_record(tmp_path / "older", "dream") is None  # no record: an older version


def test_bad_folders_and_records_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such directory"):
        read_run_record(tmp_path / "missing", "dream")
    write_run_record(tmp_path, "dream", {})
    with pytest.raises(UsageError, match="written by 'dreamprune dream', not 'pipeline'"):
        read_run_record(tmp_path, "pipeline")
    (tmp_path / RECORD_NAME).write_text("{broken")
    with pytest.raises(UsageError, match=f"unreadable {RECORD_NAME}"):
        read_run_record(tmp_path, "dream")
    with pytest.raises(UsageError, match="not a dreamprune dream folder .* save_dir"):
        check_run_folder(tmp_path, "dream")
    (tmp_path / "state.pt").write_bytes(b"")
    check_run_folder(tmp_path, "dream")  # a started dream run: accepted
