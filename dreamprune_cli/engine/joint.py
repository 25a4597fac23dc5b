"""The dual-branch loop: per step one update of the dreams, then one of the student.

The student's inputs come from an input source (:mod:`dreamprune_cli.engine.inputs`):
the dreams (the method), synthetic degraded images of the teacher's task, or half of each;
the loop, its checkpoints and its guarantees are the same for all three.

Long runs survive: a checkpoint (student, both optimisers, the student's learning-rate
scheduler and weight average, current dreams and targets, the random generator's state, step,
history, training time, the input source's name and the settings a resumed run must keep:
:meth:`JointTrainer.recorded`) is
written atomically every N steps and at the end, and only if every tensor in it is finite;
Ctrl-C or SIGTERM finishes the current step, saves, and raises
:class:`~dreamprune_cli.errors.Interrupted`; a NaN or infinite loss stops with an error
naming the step, leaving the last good checkpoint alone. On the CPU a resumed run ends bit
for bit where an uninterrupted one would. Over several processes (``sync``,
:mod:`dreamprune_cli.engine.distributed`) the checkpoint holds every rank's dreams and
generator and is written by rank 0; the losses are the ranks' means.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli.engine.distill import Distiller, StudentSchedule
from dreamprune_cli.engine.distributed import RankSync, check_world_size, rank_state
from dreamprune_cli.engine.dream import Dreamer, check_finite
from dreamprune_cli.engine.feature_distill import FeatureCalls, FeatureSettings
from dreamprune_cli.engine.inputs import (AdversarialInputs, AdversarialSettings, DreamInputs,
                                          InputSource, InputStep)
from dreamprune_cli.finite import nonfinite_entries
from dreamprune_cli.errors import DreampruneError, Interrupted, RuntimeFailure, UsageError
from dreamprune_cli.fileio import atomic_write
from dreamprune_cli.interrupts import deferred_interrupt
from dreamprune_cli.progress import NullProgress, ProgressSink

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"

__all__ = ["CHECKPOINT_NAME", "JointResult", "JointTrainer", "check_recorded",
           "check_resumable_steps", "checkpoint_record", "deferred_interrupt"]


LEGACY_RECORDED: dict[str, Any] = {"lr_schedule": "constant", "warmup_steps": 0,
                                   "ema_decay": 0.0, "dream_init": "noise", "lambda_feat": 0.0}
"""What a checkpoint written before these settings were recorded was run with."""

ABSENT_MEANS_OFF: dict[str, Any] = {"lambda_feat": 0.0}
"""Settings a checkpoint records only when on: absent from the settings of the run that
resumes it, they are off (a checkpoint written with them is checked against that)."""


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"$resume: no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UsageError(f"$resume: cannot read {path} ({type(exc).__name__}: {exc})") \
            from None


def checkpoint_record(student: StudentSchedule, dream_init: str | None,
                      features: FeatureSettings | None = None,
                      adversarial: AdversarialSettings | None = None) -> dict[str, Any]:
    """The settings a joint checkpoint records beyond ``inputs``, which a resumed run must
    keep: the student's schedule
    (:meth:`~dreamprune_cli.engine.distill.StudentSchedule.recorded`: ``lr_schedule``,
    ``warmup_steps``, ``ema_decay``, and for ``cosine`` ``lr_min_ratio`` and ``steps``),
    when dreams are among the inputs (``dream_init`` not ``None``), ``dream_init``, and with
    the feature term ``lambda_feat`` and ``feat_layers``
    (:meth:`~dreamprune_cli.engine.feature_distill.FeatureSettings.recorded`), and on
    adversarial inputs their search
    (:meth:`~dreamprune_cli.engine.inputs.AdversarialSettings.recorded`)."""
    values = student.recorded()
    if dream_init is not None:
        values["dream_init"] = dream_init
    if features is not None:
        values.update(features.recorded())
    if adversarial is not None:
        values.update(adversarial.recorded())
    return values


def check_recorded(state: dict[str, Any], recorded: dict[str, Any], path: Path) -> None:
    """The checkpoint ``state`` (read from ``path``) was written with the settings
    ``recorded`` (:func:`checkpoint_record`); a checkpoint of an earlier version, which
    records none, was written with the method's (:data:`LEGACY_RECORDED`).

    Raises:
        UsageError: one line naming the first setting whose value differs, both values and
            how to resume.
    """
    written = state.get("recorded", {})
    absent = {name: off for name, off in ABSENT_MEANS_OFF.items()
              if name in written and name not in recorded}
    for name, now in {**recorded, **absent}.items():
        before = written.get(name, LEGACY_RECORDED.get(name, now))
        if before != now:
            why = " (a cosine schedule spans the run's steps)" if name == "steps" else ""
            raise UsageError(f"${name} {now}: the checkpoint {path} was written by a run with "
                             f"${name} {before}{why} (pass ${name} {before} to resume it, or "
                             "start a new run)")


def check_resumable_steps(checkpoint: Path, total_steps: int,
                          sync: RankSync | None = None,
                          recorded: dict[str, Any] | None = None) -> None:
    """Before any work: a run resumed to ``total_steps`` must not have done more already,
    must run on as many processes as wrote the checkpoint and, when ``recorded``
    (:func:`checkpoint_record`) is given, with the settings it recorded.

    Raises:
        UsageError: the checkpoint is unreadable, is past ``total_steps``, was written
            by another number of processes, or with other settings (:func:`check_recorded`).
    """
    if not checkpoint.is_file():
        return  # stopped before its first checkpoint: the loop starts at step 0
    state = _read_state(checkpoint)
    check_world_size(state, sync, checkpoint)
    done = int(state["step"])
    if done > total_steps:
        raise UsageError(f"$steps {total_steps}: the run in {checkpoint.parent} already did "
                         f"{done} joint steps (pass $steps {done} or more to resume it)")
    if recorded is not None:
        check_recorded(state, recorded, checkpoint)


@dataclass
class JointResult:
    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    seconds: float = 0.0
    seconds_per_step: float = 0.0


class JointTrainer:
    """Runs the dual-branch loop with checkpoints; see the module docstring.

    ``inputs``: where the student's inputs come from; a bare
    :class:`~dreamprune_cli.engine.dream.Dreamer` means its dreams. ``dreamer`` is the
    source's dreamer (``None`` for synthetic inputs).
    """

    def __init__(self, inputs: InputSource | Dreamer, distiller: Distiller, round_steps: int,
                 generator: torch.Generator, sync: RankSync | None = None) -> None:
        self.inputs: InputSource = DreamInputs(inputs) if isinstance(inputs, Dreamer) \
            else inputs
        self.dreamer = self.inputs.dreamer
        self.sync = sync
        self.distiller = distiller
        self.round_steps = round_steps
        self.generator = generator
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.seconds = 0.0  # training time of every session of the run, resumed ones too

    def state_dict(self) -> dict[str, Any]:
        state = {"step": self.step, "history": self.history, "seconds": self.seconds,
                 "generator": self.generator.get_state(), "inputs": self.inputs.name,
                 "recorded": self.recorded(),
                 **self.inputs.state_dict(),
                 "distiller": self.distiller.state_dict()}
        return state if self.sync is None else \
            self.sync.gather_state(state, per_rank=("generator", *self.inputs.per_rank))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.history = list(state["history"])
        self.seconds = float(state.get("seconds", 0.0))  # absent before 0.1's resume fix
        self.generator.set_state(state["generator"])
        self.inputs.load_state_dict(state)
        self.distiller.load_state_dict(state["distiller"])

    def recorded(self) -> dict[str, Any]:
        """The settings the checkpoint records beyond ``inputs``
        (:func:`checkpoint_record`)."""
        features = self.distiller.features
        return checkpoint_record(self.distiller.schedule, None if self.dreamer is None
                                 else self.dreamer.schedule.dream_init,
                                 None if features is None else features.settings,
                                 self.inputs.settings
                                 if isinstance(self.inputs, AdversarialInputs) else None)

    def save(self, path: Path) -> None:
        """Write the state atomically; refuse (keeping the previous file) if any tensor is
        NaN or infinite, so that the checkpoint on disk is always a good one."""
        state = self.state_dict()
        bad = nonfinite_entries(state)
        if bad:
            raise RuntimeFailure(f"non-finite values in {', '.join(bad[:5])} at step "
                                 f"{self.step}: stopping without saving them (try a lower "
                                 "learning rate)")
        if self.sync is None or self.sync.is_writer:
            atomic_write(path, lambda tmp: torch.save(state, tmp), overwrite=True)

    def load(self, path: Path) -> None:
        """Continue from the checkpoint at ``path``.

        Raises:
            UsageError: unreadable, written by another number of processes, or by a run
                whose inputs came from another source or that recorded another value of one
                of :meth:`recorded`'s settings (the first such setting is named).
        """
        state = _read_state(path)
        check_world_size(state, self.sync, path)
        written = state.get("inputs", "dreams")  # absent before --inputs: dreams
        if written != self.inputs.name:
            raise UsageError(f"$inputs {self.inputs.name}: the checkpoint {path} was written "
                             f"by a run on $inputs {written} (pass $inputs {written} to resume "
                             "it, or start a new run)")
        check_recorded(state, self.recorded(), path)
        self.load_state_dict(rank_state(state, self.sync))
        log.info("resuming from %s at step %d", path, self.step)

    def run(self, total_steps: int, checkpoint: Path | None = None,
            checkpoint_every: int = 100, progress: ProgressSink | None = None) -> JointResult:
        """Run until ``total_steps`` steps are done (counting steps before a resume).

        Raises:
            Interrupted: Ctrl-C or SIGTERM, after the current step and a checkpoint.
            RuntimeFailure: a non-finite loss or state; ``checkpoint`` names the last good
                checkpoint when one is on disk.
        """
        progress = progress or NullProgress()
        try:
            return self._run(total_steps, checkpoint, checkpoint_every, progress)
        except DreampruneError as exc:
            if checkpoint is not None and checkpoint.is_file():
                exc.checkpoint, exc.resume_dir = checkpoint, checkpoint.parent
            raise

    def _run(self, total_steps: int, checkpoint: Path | None, checkpoint_every: int,
             progress: ProgressSink) -> JointResult:
        progress.start(self.inputs.phase, total_steps)
        progress.update(self.step)
        tick = time.perf_counter()

        def clock() -> None:  # training time accumulates over sessions (kept in the state)
            nonlocal tick
            now = time.perf_counter()
            self.seconds += now - tick
            tick = now

        with deferred_interrupt() as interrupted:
            while self.step < total_steps:
                if self.step % self.round_steps == 0:
                    self.inputs.new_round()
                drawn, teacher_features = self._draw()
                losses = dict(zip(drawn.losses, self._mean(*drawn.losses.values()))) \
                    if drawn.losses else {}
                check_finite(self.step + 1, **losses)
                kd = self.distiller.step(drawn.inputs, drawn.teacher_out) \
                    if teacher_features is None else \
                    self.distiller.step(drawn.inputs, drawn.teacher_out, teacher_features)
                feat = self.distiller.last_feature_loss
                if feat is None:
                    kd, = self._mean(kd)
                    check_finite(self.step + 1, distill=kd)
                    distilled = {"kd": kd}
                else:
                    kd, feat = self._mean(kd, feat)
                    check_finite(self.step + 1, distill=kd, feat=feat)
                    distilled = {"kd": kd, "feat": feat}
                self.step += 1
                self.history.append({"step": self.step, **losses, **distilled})
                shown = {"dream": losses["dream"]} if "dream" in losses else {}
                progress.update(self.step, **shown, kd=kd)
                clock()
                if checkpoint is not None and self.step % checkpoint_every == 0:
                    self.save(checkpoint)
                signal_number = interrupted() if self.sync is None else \
                    self.sync.first_signal(interrupted())
                if signal_number is not None:
                    progress.finish()
                    if checkpoint is not None:
                        self.save(checkpoint)
                        log.warning("interrupted at step %d; checkpoint saved to %s "
                                    "(continue with --resume %s)", self.step, checkpoint,
                                    checkpoint.parent)
                        raise Interrupted(signal_number, checkpoint, checkpoint.parent)
                    raise Interrupted(signal_number)
        clock()
        if checkpoint is not None:
            self.save(checkpoint)
        progress.finish()
        return JointResult(history=self.history, steps=self.step, seconds=self.seconds,
                           seconds_per_step=self.seconds / self.step if self.step else 0.0)

    def _draw(self) -> tuple[InputStep, FeatureCalls | None]:
        """The step's inputs and teacher outputs and, with the feature term, the teacher's
        features, recorded by hooks during the very forward that gave its outputs (no second
        teacher forward; no hook at all without the term)."""
        features = self.distiller.features
        if features is None:
            return self.inputs.step(), None
        with features.teacher_tap() as tap:
            drawn = self.inputs.step()
        return drawn, tap.calls()

    def _mean(self, *losses: float) -> list[float]:
        """The losses' means over the ranks (the losses themselves in one process)."""
        return list(losses) if self.sync is None else self.sync.mean(*losses)
