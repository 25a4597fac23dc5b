"""Terminal front end: logging, progress bars and result output.

Results go to stdout (a rich table, or exactly one JSON object with ``--json``); logs and
progress go to stderr. Live progress bars are drawn only when stderr is a terminal and
``--quiet`` is off.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from dreamprune_cli.fileio import to_jsonable
from dreamprune_cli.progress import NullProgress, ProgressSink

log = logging.getLogger("dreamprune_cli")


def configure_logging(stderr: Console, quiet: bool, verbose: bool) -> None:
    """Route the package's log records, and Python warnings from any library, to stderr
    through rich. ``quiet``: errors only (warnings too are dropped)."""
    handler = RichHandler(console=stderr, show_time=False, show_path=False,
                          rich_tracebacks=verbose, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
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

    def start(self, phase: str, total: int | None) -> None:
        self.finish()
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
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


class LogProgress:
    """Without a terminal: one log line when a phase starts and one when it ends."""

    def __init__(self) -> None:
        self._phase: str | None = None
        self._start = 0.0

    def start(self, phase: str, total: int | None) -> None:
        self.finish()
        self._phase, self._start = phase, time.perf_counter()
        log.info("%s: started (%s steps)", phase, total if total is not None else "?")

    def update(self, completed: int, **fields: float | str) -> None:
        pass

    def finish(self) -> None:
        if self._phase is not None:
            log.info("%s: done in %.1f s", self._phase, time.perf_counter() - self._start)
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
        return LogProgress()

    def emit(self, data: dict[str, Any], *tables: Table) -> None:
        """Print the result: JSON on stdout with --json (tables to stderr), else tables."""
        if self.json_output:
            self.stdout.file.write(json.dumps(to_jsonable(data)) + "\n")
            self.stdout.file.flush()
            if not self.quiet:
                for table in tables:
                    self.stderr.print(table)
        else:
            for table in tables:
                self.stdout.print(table)

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
    ``caption`` is printed under it."""
    table = Table(title=title, caption=caption)
    for column in columns:
        table.add_column(column)
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
