"""Atomic, non-clobbering file writes shared by every output of dreamprune.

Every file is written to a temporary sibling and renamed into place, so an interrupted run
never leaves a half-written file where a good one was, and an existing file is never replaced
unless the caller says so.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dreamprune_cli.errors import DreampruneError, RuntimeFailure, UsageError


def check_writable(path: Path, overwrite: bool) -> None:
    """Refuse to replace an existing file unless ``overwrite``."""
    if path.exists() and not overwrite:
        raise UsageError(f"{path}: already exists; pass $overwrite to replace it")


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None],
                 overwrite: bool = False) -> Path:
    """Call ``write(tmp_path)`` then rename ``tmp_path`` onto ``path``.

    The temporary file lives in the destination folder (same file system, so the rename is
    atomic) and is removed if ``write`` fails; an existing ``path`` is untouched then.

    Raises:
        UsageError: ``path`` exists and not ``overwrite``.
        RuntimeFailure: the file could not be written (disk full, file size limit, no
            permission, ...): ``cannot write PATH: REASON``, whichever library wrote it.
    """
    path = Path(path)
    check_writable(path, overwrite)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix,
                                        dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except Exception as exc:
        reason = None if isinstance(exc, DreampruneError) else write_failure(exc)
        if reason is None:
            raise
        raise RuntimeFailure(f"cannot write {path}: {reason}") from exc
    finally:
        if tmp is not None and tmp.exists():
            tmp.unlink()
    return path


# How libraries that do their own I/O report a failed write (no OSError reaches Python):
# safetensors ("I/O error: File too large (os error 27)"), torch's legacy writer ("write():
# fd 3 failed with No space left on device") and its zip writer ("unexpected pos 576 vs 534",
# "PytorchStreamWriter failed writing file ...": a write that stopped short).
_IO_MESSAGES = (
    (re.compile(r"I/O error: (.+?)(?: \(os error \d+\))?$", re.M), None),
    (re.compile(r"fd \d+ failed with (.+)$", re.M), None),
    (re.compile(r"unexpected pos \d+ vs \d+|PytorchStreamWriter failed writing"),
     "the write stopped short (disk full or file size limit?)"),
)


def write_failure(exc: BaseException) -> str | None:
    """Why a write failed when ``exc`` (or an exception it was raised from) is an I/O error,
    e.g. ``File too large``; ``None`` when ``exc`` is not about writing (a bug: re-raised)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return seen.strerror or str(seen)
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    for pattern, reason in _IO_MESSAGES:
        match = pattern.search(text)
        if match:
            return reason or match.group(1).strip()
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike[str], text: str, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite)


def write_json_atomic(path: str | os.PathLike[str], data: Any, overwrite: bool = False) -> Path:
    """Write ``data`` as indented JSON atomically (``inf`` as ``"inf"``, NaN as ``null``)."""
    return write_text_atomic(path, json.dumps(to_jsonable(data), indent=2) + "\n", overwrite)


def to_jsonable(value: Any) -> Any:
    """Make ``value`` strict-JSON safe: ``inf`` -> ``"inf"`` (a perfect PSNR), ``-inf`` ->
    ``"-inf"``, ``nan`` -> ``None`` (no value), paths -> strings."""
    if isinstance(value, float):
        if value != value:
            return None
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def ensure_output_dir(path: Path, overwrite: bool, resume: bool = False) -> Path:
    """Create ``path``; an existing non-empty folder is an error unless overwrite or resume."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path}: exists and is not a directory")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        raise UsageError(f"{path}: directory is not empty; pass $overwrite to write into it")
    path.mkdir(parents=True, exist_ok=True)
    return path
