"""``dreamprune_cli.fileio``: atomic, non-clobbering writes, failed writes, strict JSON, folders."""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path

import pytest

from dreamprune_cli.errors import RuntimeFailure, UsageError
from dreamprune_cli.fileio import (atomic_write, ensure_output_dir, to_jsonable,
                                   write_failure, write_json_atomic, write_text_atomic)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_an_existing_file_is_replaced_only_when_asked(tmp_path: Path) -> None:
    path = write_text_atomic(tmp_path / "sub" / "a.txt", "one")  # parents are made
    assert path.read_text() == "one"
    with pytest.raises(UsageError, match="already exists; pass overwrite"):
        write_text_atomic(path, "two")
    assert path.read_text() == "one"
    write_text_atomic(path, "two", overwrite=True)
    assert path.read_text() == "two" and _leftovers(path.parent) == []


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")

    def full_disk(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(RuntimeFailure, match=f"^cannot write {path}: No space left on device$"):
        atomic_write(path, full_disk, overwrite=True)

    def bug(tmp: Path) -> None:
        raise ZeroDivisionError("a bug, not a write failure")

    with pytest.raises(ZeroDivisionError):  # re-raised as it is
        atomic_write(path, bug, overwrite=True)
    assert path.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_write_failure_reads_the_libraries_messages() -> None:
    assert write_failure(RuntimeError("I/O error: File too large (os error 27)")) == \
        "File too large"
    assert write_failure(RuntimeError("write(): fd 3 failed with No space left on device")) == \
        "No space left on device"
    assert write_failure(RuntimeError("unexpected pos 576 vs 534")).startswith(
        "the write stopped short")
    try:
        raise ValueError("wrapped") from OSError(errno.EFBIG, "File too large")
    except ValueError as exc:
        assert write_failure(exc) == "File too large"
    assert write_failure(KeyError("x")) is None


def test_json_is_strict(tmp_path: Path) -> None:
    data = {"psnr": math.inf, "low": -math.inf, "none": math.nan, 1: (tmp_path, 0.5)}
    assert to_jsonable(data) == {"psnr": "inf", "low": "-inf", "none": None,
                                 "1": [str(tmp_path), 0.5]}
    path = write_json_atomic(tmp_path / "r.json", data)
    assert json.loads(path.read_text()) == to_jsonable(data)
    assert path.read_text().endswith("}\n") and "NaN" not in path.read_text()


def test_output_folders(tmp_path: Path) -> None:
    out = ensure_output_dir(tmp_path / "new" / "out", overwrite=False)
    assert out.is_dir()
    ensure_output_dir(out, overwrite=False)  # empty: fine
    (out / "x").write_text("")
    with pytest.raises(UsageError, match="directory is not empty; pass overwrite"):
        ensure_output_dir(out, overwrite=False)
    assert ensure_output_dir(out, overwrite=True) == ensure_output_dir(out, False, resume=True)
    with pytest.raises(UsageError, match="exists and is not a directory"):
        ensure_output_dir(out / "x", overwrite=True)
