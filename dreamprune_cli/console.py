"""Terminal front end: logging, progress bars and result output.

Results go to stdout (a rich table, or exactly one JSON object with ``--json``); logs and
progress go to stderr. Live progress bars are drawn only when stderr is a terminal and
``--quiet`` is off; otherwise (a log file, a batch job) progress is plain log lines: one when
a phase starts, one every :data:`PROGRESS_INTERVAL_S` seconds with the step, the losses, the
elapsed and the remaining time, and one when it ends. Tables never cut data: on a terminal
too narrow for them their cells wrap, and off a terminal they are printed at full width.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.logging import RichHandler
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from dreamprune_cli.fileio import to_jsonable
from dreamprune_cli.progress import NullProgress, ProgressSink

log = logging.getLogger("dreamprune_cli")

PROGRESS_INTERVAL_S = 30.0
"""Seconds between two progress lines when stderr is not a terminal (default)."""
PROGRESS_INTERVAL_ENV = "DREAMPRUNE_PROGRESS_INTERVAL"
"""Environment variable that changes that interval (seconds, >= 0)."""


def progress_interval(env: dict[str, str] | None = None) -> float:
    """``$DREAMPRUNE_PROGRESS_INTERVAL`` seconds if it is a number >= 0, else 30."""
    raw = (os.environ if env is None else env).get(PROGRESS_INTERVAL_ENV, "")
    try:
        value = float(raw)
    except ValueError:
        return PROGRESS_INTERVAL_S
    return value if value >= 0 else PROGRESS_INTERVAL_S


def configure_logging(stderr: Console, quiet: bool, verbose: bool) -> None:
    """Route the package's log records, and Python warnings from any library, to stderr:
    through rich on a terminal, else as plain ``HH:MM:SS LEVEL message`` lines (never wrapped,
    one record per line). ``quiet``: errors only (warnings too are dropped)."""
    handler: logging.Handler
    if stderr.is_terminal:
        handler = RichHandler(console=stderr, show_time=False, show_path=False,
                              rich_tracebacks=verbose, markup=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = logging.StreamHandler(stderr.file)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                               datefmt="%H:%M:%S"))
    level = logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO
    logging.captureWarnings(True)  # warnings.warn (torch, Pillow, user models) -> logging
    for name in ("dreamprune_cli", "py.warnings"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


class RichProgress:
    """A rich progress bar per phase on stderr, showing extra fields (losses, PSNR)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress: Progress | None = None
        self._task: Any = None

    def start(self, phase: str, total: int | None, unit: str = "steps") -> None:
        self.finish()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn(unit), TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self._console, transient=False)
        self._progress.start()
        self._task = self._progress.add_task(phase, total=total, info="")

    def update(self, completed: int, **fields: float | str) -> None:
        if self._progress is None:
            return
        info = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                         for k, v in fields.items())
        self._progress.update(self._task, completed=completed, info=info)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``1:15``; ``3725`` -> ``1:02:05`` (whole seconds)."""
    whole = int(round(max(seconds, 0.0)))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _singular(unit: str) -> str:
    """``"steps"`` -> ``"step"``: the progress units are regular plurals."""
    return unit[:-1] if unit.endswith("s") else unit


class LogProgress:
    """Without a terminal: plain log lines, as training tools write to batch logs.

    One line when a phase starts, then at most one every ``interval`` seconds (the first
    after ``interval`` seconds; ``DREAMPRUNE_PROGRESS_INTERVAL`` sets it), e.g. ``dream+distill: step 120/400 (30%), dream=0.0453
    kd=0.0123, elapsed 1:05, left 2:31``, and one when it ends. The time left extrapolates
    the rate since the phase's first update (so a resumed run's earlier steps do not count).
    """

    def __init__(self, interval: float = PROGRESS_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._phase: str | None = None
        self._total: int | None = None
        self._unit = "steps"
        self._start = self._last_line = 0.0
        self._first: tuple[int, float] | None = None
        self._completed = 0

    def start(self, phase: str, total: int | None, unit: str = "steps") -> None:
        self.finish()
        self._phase, self._total, self._unit = phase, total, unit
        self._start = self._last_line = self._clock()
        self._first, self._completed = None, 0
        log.info("%s: started (%s %s)", phase, total if total is not None else "?", unit)

    def update(self, completed: int, **fields: float | str) -> None:
        if self._phase is None:
            return
        now = self._clock()
        self._completed = completed
        if self._first is None:
            self._first = (completed, now)
            return
        if now - self._last_line < self.interval:
            return
        self._last_line = now
        log.info("%s", self.line(completed, now, fields))

    def line(self, completed: int, now: float, fields: dict[str, float | str]) -> str:
        """The progress line for ``completed`` steps at clock time ``now``."""
        total = self._total
        parts = [f"{self._phase}: {_singular(self._unit)} {completed}"
                 + (f"/{total} ({100 * completed / total:.0f}%)" if total else "")]
        if fields:
            parts.append(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in fields.items()))
        parts.append(f"elapsed {format_duration(now - self._start)}")
        if total and self._first is not None and completed > self._first[0]:
            rate = (now - self._first[1]) / (completed - self._first[0])
            parts.append(f"left {format_duration(rate * (total - completed))}")
        return ", ".join(parts)

    def finish(self) -> None:
        if self._phase is not None:
            elapsed = format_duration(self._clock() - self._start)
            if self._total is not None and self._completed < self._total:
                log.info("%s: stopped at %s %d of %d after %s", self._phase,
                         _singular(self._unit), self._completed, self._total, elapsed)
            else:
                log.info("%s: done, %d %s in %s", self._phase, self._completed, self._unit,
                         elapsed)
            self._phase = None


@dataclass
class Ui:
    """What a command needs to talk to the user."""

    json_output: bool = False
    quiet: bool = False
    verbose: bool = False
    stdout: Console = field(default_factory=lambda: Console(soft_wrap=True))
    stderr: Console = field(default_factory=lambda: Console(stderr=True))

    def __post_init__(self) -> None:
        configure_logging(self.stderr, self.quiet, self.verbose)

    def progress(self) -> ProgressSink:
        if self.quiet:
            return NullProgress()
        if self.stderr.is_terminal:
            return RichProgress(self.stderr)
        return LogProgress(interval=progress_interval())

    def emit(self, data: dict[str, Any], *tables: Table) -> None:
        """Print the result: JSON on stdout with --json (tables to stderr), else tables."""
        if self.json_output:
            self.stdout.file.write(json.dumps(to_jsonable(data)) + "\n")
            self.stdout.file.flush()
            if not self.quiet:
                for table in tables:
                    self.print_table(table, stderr=True)
        else:
            for table in tables:
                self.print_table(table)

    def print_table(self, table: Table, stderr: bool = False) -> None:
        """Print ``table`` without cutting data: off a terminal at its full natural width
        (a narrow ``COLUMNS`` or the 80-column default would squeeze it), on a terminal
        wrapped within cells."""
        console = self.stderr if stderr else self.stdout
        if console.is_terminal:
            console.print(table)
            return
        natural = Measurement.get(console, console.options.update_width(100_000), table)
        wide = Console(file=console.file, width=max(natural.maximum, 20),
                       color_system=None, highlight=False)
        wide.print(table)

    def error(self, message: str) -> None:
        self.stderr.print(Text.assemble(("error: ", "bold red"), message), highlight=False,
                          soft_wrap=True)

    def fail(self, message: str, exit_code: int, **extra: Any) -> None:
        """Report a failed command: one line on stderr and, with ``--json``, the one JSON
        object on stdout, ``{"error": ..., "exit_code": ...}`` plus ``extra`` items that are
        not ``None`` (e.g. the checkpoint to resume from)."""
        self.error(message)
        if self.json_output:
            data = {"error": message, "exit_code": exit_code,
                    **{k: v for k, v in extra.items() if v is not None}}
            self.stdout.file.write(json.dumps(to_jsonable(data)) + "\n")
            self.stdout.file.flush()


def make_table(title: str, columns: list[str], rows: list[list[Any]],
               caption: str | None = None) -> Table:
    """A simple rich table; floats shown with 4 significant decimals, ``inf`` as ``inf``;
    ``caption`` is printed under it. Cells wrap (``overflow="fold"``), never end in an
    ellipsis."""
    table = Table(title=title, caption=caption)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[format_value(v) for v in row])
    return table


def format_value(value: Any) -> str:
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value in (float("inf"), float("-inf")):
            return "inf" if value > 0 else "-inf"
        return f"{value:.4f}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return "" if value is None else str(value)


def show_usage_error(exc: Any, json_mode: bool) -> None:
    """Show a click usage error: rich's box on a terminal, else one line; JSON with --json."""
    import json

    command = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "dreamprune"
    message = f"{exc.format_message()} ({command} --help for the options)"
    if sys.stderr.isatty():
        from typer import rich_utils

        rich_utils.rich_format_error(exc)
    else:
        sys.stderr.write("error: " + " ".join(message.split()) + "\n")
    if json_mode:
        sys.stdout.write(json.dumps({"error": " ".join(message.split()),
                                     "exit_code": exc.exit_code}) + "\n")
        sys.stdout.flush()
