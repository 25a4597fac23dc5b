"""Expected errors and the exit codes they map to.

Engine code raises these; the CLI turns them into one line on stderr and the exit code.
Anything else is a bug and surfaces as a runtime failure (exit 1).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class DreampruneError(Exception):
    """Base class of the errors a user can cause; carries its exit code."""

    exit_code: int = EXIT_RUNTIME


class UsageError(DreampruneError):
    """Bad arguments, settings, files or checkpoints: exit 2."""

    exit_code = EXIT_USAGE


class RuntimeFailure(DreampruneError):
    """Something failed while working (I/O, numerics): exit 1."""

    exit_code = EXIT_RUNTIME
