"""Helpers every benchmark script shares: the machine's load, result rows, marked sections.

The scripts in ``bench/`` import this module from beside them (``python bench/NAME.py`` puts
``bench/`` on ``sys.path``; scripts loaded another way insert it first). It holds only what
two or more scripts need, so a script's own logic stays in the script.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any


def uptime() -> str:
    """The ``uptime`` line (the shared machine's load averages).

    Falls back to ``"load average: 1m, 5m, 15m"`` from :func:`os.getloadavg` where the
    ``uptime`` command is missing or fails, and to ``"unknown"`` where neither exists.
    """
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        load = load_average()
        return "unknown" if load is None else "load average: " + ", ".join(
            f"{value:.2f}" for value in load)


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages rounded to 0.01, or ``None`` where the system has
    none (:func:`os.getloadavg` raises ``OSError``)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def load_1min() -> float | None:
    """The 1-minute load average (rounded to 0.01), or ``None`` where the system has none."""
    load = load_average()
    return None if load is None else load[0]


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Every row of a JSON-lines results file, in file order; ``[]`` when it does not exist.
    Blank lines are skipped; a malformed line raises ``json.JSONDecodeError``."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_row(row: dict[str, Any], path: Path) -> None:
    """Append ``row`` to the JSON-lines file ``path`` (parents created) as one line, flushed
    when the file closes: a crash loses at most the row being written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(row) + "\n")


def write_section(section: str, path: Path, start: str, end: str) -> None:
    """Replace the part of ``path`` between the markers ``start`` and ``end`` by ``section``
    (which carries both markers), or append it when the markers are absent; a missing file
    starts as ``# Results``. Written atomically (a temporary file beside it, then renamed)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Results\n\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
