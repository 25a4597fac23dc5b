"""dream: progress saved within a batch, Ctrl-C saves and says how to resume, a resumed run
ends bit for bit where an uninterrupted one does, and --resume never silently starts over."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.engine.runtime import resolve_precision
from dreamprune_cli.engine.dream import DreamSchedule
from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.loading import load_model
from dreamprune_cli.runkit.dream_files import STATE_NAME, run_dream_to_folder

SCHEDULE = DreamSchedule(size=32, batch_size=2)
CPU = torch.device("cpu")


class InterruptAt:
    """A progress sink that presses Ctrl-C (a real SIGINT) when step ``at`` is reported."""

    def __init__(self, at: int) -> None:
        self.at = at

    def start(self, phase: str, total: int | None, unit: str = "steps") -> None:
        pass

    def update(self, completed: int, **fields: float | str) -> None:
        if completed == self.at:
            os.kill(os.getpid(), signal.SIGINT)

    def finish(self) -> None:
        pass


def _dream(folder: Path, steps: int = 6, resume: bool = False, progress: object = None,
           save_every: int = 2) -> dict:
    torch.manual_seed(0)  # the same randomly initialised teacher every time
    teacher = load_model("ffa", "tiny", use_bundled=False, overrides={"blocks": 1})
    return run_dream_to_folder(teacher.adapter(), make_clean_source(None), folder, 4, steps,
                               SCHEDULE, torch.Generator().manual_seed(0), CPU,
                               resolve_precision(CPU), {"seed": 0}, resume=resume,
                               progress=progress, save_every=save_every)  # type: ignore[arg-type]


@pytest.mark.parametrize("interrupt_at", [3, 6, 9])  # inside batch 1, its end, inside batch 2
def test_interrupted_dream_resumes_bit_for_bit(tmp_path: Path, interrupt_at: int,
                                               caplog: pytest.LogCaptureFixture) -> None:
    _dream(tmp_path / "whole")
    with caplog.at_level(logging.WARNING, logger="dreamprune_cli"), \
            pytest.raises(KeyboardInterrupt):
        _dream(tmp_path / "cut", progress=InterruptAt(interrupt_at))
    assert (tmp_path / "cut" / STATE_NAME).is_file()
    assert not (tmp_path / "cut" / "dreams.safetensors").exists()
    assert f"dreamprune dream --resume {tmp_path / 'cut'}" in caplog.text
    _dream(tmp_path / "cut", resume=True)
    whole = load_file(str(tmp_path / "whole" / "dreams.safetensors"))
    resumed = load_file(str(tmp_path / "cut" / "dreams.safetensors"))
    for key in ("dreams", "clean", "restored"):
        assert torch.equal(whole[key], resumed[key]), key
    assert not (tmp_path / "cut" / STATE_NAME).exists()
    assert (tmp_path / "whole" / "losses.csv").read_text() == \
        (tmp_path / "cut" / "losses.csv").read_text()


def test_progress_saved_within_a_batch(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _dream(tmp_path / "d", progress=InterruptAt(5), save_every=2)
    state = torch.load(tmp_path / "d" / STATE_NAME, weights_only=True)
    assert state["current"]["batch"] == 0 and state["current"]["step"] == 5
    assert state["dreams"] == [] and len(state["history"]) == 5
    assert state["run"] == {"count": 4, "steps": 6, "batch_size": 2, "size": 32}


def test_resume_with_nothing_to_resume_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="nothing to resume"):
        _dream(empty, resume=True)
    with pytest.raises(UsageError, match="nothing to resume"):
        _dream(tmp_path / "absent", resume=True)
    assert not (tmp_path / "absent").exists()


def test_resume_with_other_settings_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _dream(tmp_path / "d", progress=InterruptAt(3))
    with pytest.raises(UsageError, match="started with steps=6, not 8"):
        _dream(tmp_path / "d", steps=8, resume=True)
