"""``dreamprune_cli.errors``: exit codes of each error, ``$field`` spelling of messages."""

from __future__ import annotations

import signal
from pathlib import Path

from dreamprune_cli.errors import (EXIT_INTERRUPTED, EXIT_RUNTIME, EXIT_TERMINATED, EXIT_USAGE,
                                   DreampruneError, Interrupted, RuntimeFailure, UsageError,
                                   spell_fields)


def test_exit_codes_of_each_error() -> None:
    assert (EXIT_RUNTIME, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED) == (1, 2, 130, 143)
    assert UsageError("x").exit_code == 2 and RuntimeFailure("x").exit_code == 1
    assert DreampruneError("x").exit_code == 1 and DreampruneError("x").checkpoint is None
    assert isinstance(UsageError("x"), DreampruneError)


def test_interrupted_is_a_keyboard_interrupt_with_the_signals_code(tmp_path: Path) -> None:
    ctrl_c = Interrupted()
    assert isinstance(ctrl_c, KeyboardInterrupt) and ctrl_c.exit_code == 130
    assert str(ctrl_c) == "SIGINT"
    stopped = Interrupted(signal.SIGTERM, checkpoint=tmp_path / "c.pt", resume_dir=tmp_path)
    assert (stopped.exit_code, stopped.signal_number, str(stopped)) == (143, 15, "SIGTERM")
    assert stopped.checkpoint == tmp_path / "c.pt" and stopped.resume_dir == tmp_path


def test_fields_are_spelled_as_settings_or_as_flags() -> None:
    error = UsageError("$flops_target 1.5: expected a fraction; see $calibration_steps")
    assert str(error) == "flops_target 1.5: expected a fraction; see calibration_steps"
    assert error.spelled(lambda f: "--" + f.replace("_", "-")) == \
        "--flops-target 1.5: expected a fraction; see --calibration-steps"
    assert spell_fields("cost $5 and $Upper stay", str.upper) == "cost $5 and $Upper stay"
    assert spell_fields("$a_1,$b", lambda f: f"<{f}>") == "<a_1>,<b>"
