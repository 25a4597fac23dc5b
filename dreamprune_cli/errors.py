"""Expected errors and the exit codes they map to.

Engine code raises these; the CLI turns them into one line on stderr and the exit code.
Anything else is a bug and surfaces as a runtime failure (exit 1).
"""

from __future__ import annotations

import signal
from pathlib import Path

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM


class DreampruneError(Exception):
    """Base class of the errors a user can cause; carries its exit code.

    ``checkpoint`` is the resumable state a failed run left behind (``None`` when none):
    the CLI names it and the folder to pass to ``--resume``.
    """

    exit_code: int = EXIT_RUNTIME
    checkpoint: Path | None = None
    resume_dir: Path | None = None


class UsageError(DreampruneError):
    """Bad arguments, settings, files or checkpoints: exit 2."""

    exit_code = EXIT_USAGE


class RuntimeFailure(DreampruneError):
    """Something failed while working (I/O, numerics): exit 1."""

    exit_code = EXIT_RUNTIME


class Interrupted(KeyboardInterrupt):
    """The run was stopped by a signal: Ctrl-C (SIGINT) or a scheduler (SIGTERM).

    A ``KeyboardInterrupt`` so that code catching Ctrl-C also sees a SIGTERM. The exit code
    is ``128 + signal number`` (130, 143) as shells report it; ``checkpoint`` and
    ``resume_dir`` name what was saved, if anything.
    """

    def __init__(self, signal_number: int = signal.SIGINT, checkpoint: Path | None = None,
                 resume_dir: Path | None = None) -> None:
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = int(signal_number)
        self.checkpoint = checkpoint
        self.resume_dir = resume_dir

    @property
    def exit_code(self) -> int:
        return 128 + self.signal_number
