"""The dual-branch loop: per step one update of the dreams, then one of the student.

Long runs survive: a checkpoint (student, both optimisers, current dreams and targets, the
random generator's state, step, history) is written atomically every N steps and at the end;
Ctrl-C finishes the current step, saves, and re-raises ``KeyboardInterrupt``; a NaN or
infinite loss stops with an error naming the step, leaving the last good checkpoint alone.
On the CPU a resumed run ends bit for bit where an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli.engine.distill import Distiller
from dreamprune_cli.engine.dream import Dreamer, check_finite
from dreamprune_cli.errors import UsageError
from dreamprune_cli.fileio import atomic_write
from dreamprune_cli.progress import NullProgress, ProgressSink

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Turn SIGINT into a flag the loop polls between steps (main thread only).

    Yields a function telling whether Ctrl-C was pressed. Outside the main thread, or where
    signals are unavailable, Ctrl-C keeps its default behaviour.
    """
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed.is_set
        return

    def handler(signum: int, frame: object) -> None:
        pressed.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield pressed.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class JointResult:
    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    seconds_per_step: float = 0.0


class JointTrainer:
    """Runs the dual-branch loop with checkpoints; see the module docstring."""

    def __init__(self, dreamer: Dreamer, distiller: Distiller, round_steps: int,
                 generator: torch.Generator) -> None:
        self.dreamer = dreamer
        self.distiller = distiller
        self.round_steps = round_steps
        self.generator = generator
        self.step = 0
        self.history: list[dict[str, float]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "history": self.history,
                "generator": self.generator.get_state(),
                "dreamer": self.dreamer.state_dict(),
                "distiller": self.distiller.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.generator.set_state(state["generator"])
        self.dreamer.load_state_dict(state["dreamer"])
        self.distiller.load_state_dict(state["distiller"])

    def save(self, path: Path) -> None:
        state = self.state_dict()
        atomic_write(path, lambda tmp: torch.save(state, tmp), overwrite=True)

    def load(self, path: Path) -> None:
        if not path.is_file():
            raise UsageError(f"--resume: no checkpoint at {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UsageError(f"--resume: cannot read {path} ({type(exc).__name__}: {exc})") \
                from None
        self.load_state_dict(state)
        log.info("resuming from %s at step %d", path, self.step)

    def run(self, total_steps: int, checkpoint: Path | None = None,
            checkpoint_every: int = 100, progress: ProgressSink | None = None) -> JointResult:
        """Run until ``total_steps`` steps are done (counting steps before a resume)."""
        progress = progress or NullProgress()
        progress.start("dream+distill", total_steps)
        progress.update(self.step)
        start, first_step = time.perf_counter(), self.step
        with deferred_interrupt() as interrupted:
            while self.step < total_steps:
                if self.step % self.round_steps == 0:
                    self.dreamer.new_round()
                dreamed = self.dreamer.step()
                check_finite(self.step + 1, dream=dreamed.dream_loss, orth=dreamed.orth_loss)
                kd = self.distiller.step(dreamed.dreams, dreamed.teacher_out)
                check_finite(self.step + 1, distill=kd)
                self.step += 1
                self.history.append({"step": self.step, "dream": dreamed.dream_loss,
                                     "orth": dreamed.orth_loss, "kd": kd})
                progress.update(self.step, dream=dreamed.dream_loss, kd=kd)
                if checkpoint is not None and self.step % checkpoint_every == 0:
                    self.save(checkpoint)
                if interrupted():
                    if checkpoint is not None:
                        self.save(checkpoint)
                        log.warning("interrupted at step %d; checkpoint saved to %s "
                                    "(continue with --resume)", self.step, checkpoint)
                    progress.finish()
                    raise KeyboardInterrupt
        if checkpoint is not None:
            self.save(checkpoint)
        progress.finish()
        seconds = time.perf_counter() - start
        done = self.step - first_step
        return JointResult(history=self.history, steps=self.step, seconds=seconds,
                           seconds_per_step=seconds / done if done else 0.0)
