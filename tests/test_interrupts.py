"""``dreamprune_cli.interrupts``: SIGTERM as an interrupt, signals deferred to a polled flag."""

from __future__ import annotations

import signal
import threading

import pytest

from dreamprune_cli.errors import Interrupted
from dreamprune_cli.interrupts import deferred_interrupt, signals_as_interrupts


def test_sigterm_raises_interrupted_and_the_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as stop:
        with signals_as_interrupts():
            signal.raise_signal(signal.SIGTERM)
    assert stop.value.exit_code == 143 and stop.value.signal_number == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_deferred_signals_set_the_flag_once_and_are_restored() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with deferred_interrupt() as received:
        assert received() is None
        signal.raise_signal(signal.SIGTERM)  # no exception: the loop polls
        signal.raise_signal(signal.SIGINT)
        assert received() == signal.SIGTERM  # the first signal is kept
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_outside_the_main_thread_nothing_changes() -> None:
    seen = []

    def work() -> None:
        with signals_as_interrupts(), deferred_interrupt() as received:
            seen.append((received(), signal.getsignal(signal.SIGTERM)))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen == [(None, before)]
