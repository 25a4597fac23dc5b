"""Expected errors and the exit codes they map to.

Code below the command line raises these; the CLI turns them into one line on stderr and
the exit code. Anything else is a bug and surfaces as a runtime failure (exit 1).

Messages name settings fields as ``$field`` (``"$flops_target 1.5: expected ..."``):
``str(error)`` spells them as settings fields (``flops_target 1.5: ...``), the command line as
its flags (``--flops-target 1.5: ...``, :meth:`DreampruneError.spelled`).
"""

from __future__ import annotations

import re
import signal
from collections.abc import Callable
from pathlib import Path

_FIELD = re.compile(r"\$([a-z][a-z0-9_]*)")


def spell_fields(text: str, spell: Callable[[str], str]) -> str:
    """``text`` with every ``$field`` replaced by ``spell(field)``."""
    return _FIELD.sub(lambda match: spell(match.group(1)), text)

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

    def __str__(self) -> str:
        return self.spelled(str)

    def spelled(self, spell: Callable[[str], str]) -> str:
        """The message with each ``$field`` written as ``spell(field)``."""
        return spell_fields(super().__str__(), spell)


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
