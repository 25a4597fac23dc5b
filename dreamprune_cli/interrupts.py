"""Stopping long runs cleanly on Ctrl-C (SIGINT) and on a scheduler's SIGTERM.

Batch systems (``timeout``, Slurm, ``docker stop``, systemd) end a job with SIGTERM, which by
default kills Python at once, losing the work since the last checkpoint. Two tools:

* :func:`signals_as_interrupts` (the CLI wraps every subcommand in it): SIGTERM raises
  :class:`~dreamprune_cli.errors.Interrupted` like Ctrl-C raises ``KeyboardInterrupt``, so
  ``finally`` blocks run (atomic writes remove their temporary files) and the exit code is 143.
* :func:`deferred_interrupt` (training loops): either signal only sets a flag that the loop
  polls between steps, so the current step finishes and a checkpoint is saved first.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

from dreamprune_cli.errors import Interrupted

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Interrupted` (exit code 143).

    Outside the main thread signals cannot be handled; the block then changes nothing.
    """
    if not _in_main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Callable[[], int | None]]:
    """Turn SIGINT and SIGTERM into a flag the loop polls between steps (main thread only).

    Yields a function returning the number of the first signal received, or ``None``.
    Outside the main thread both signals keep their current behaviour.
    """
    received: list[int] = []
    if not _in_main_thread():
        yield lambda: None
        return

    def handler(signum: int, frame: object) -> None:
        if not received:
            received.append(signum)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield lambda: received[0] if received else None
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
