"""The dual-branch loop: frozen teacher, fixed masks, resume, interrupt, NaN."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch

from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.engine.runtime import resolve_precision
from dreamprune_cli.engine.distill import Distiller
from dreamprune_cli.engine.dream import Dreamer, DreamSchedule
from dreamprune_cli.engine.joint import JointTrainer
from dreamprune_cli.errors import Interrupted, RuntimeFailure
from dreamprune_cli.prune.unstructured.masks import get_masks, plain_state_dict
from tests.helpers import masked_ffa_pair as _teacher_student

CPU = torch.device("cpu")


def _trainer(schedule: DreamSchedule | None = None, seed: int = 0) -> JointTrainer:
    teacher, student = _teacher_student()
    schedule = schedule or DreamSchedule(batch_size=2, size=16)
    generator = torch.Generator().manual_seed(seed)
    precision = resolve_precision(CPU)
    dreamer = Dreamer(teacher, make_clean_source(None), schedule, generator, CPU, precision)
    distiller = Distiller(student, 1e-3, 1.0, CPU, precision)
    return JointTrainer(dreamer, distiller, round_steps=3, generator=generator)


def test_teacher_unchanged_masks_fixed() -> None:
    trainer = _trainer()
    teacher_before = {k: v.clone() for k, v in trainer.dreamer.teacher.network.state_dict().items()}
    student = trainer.distiller.student.network
    masks = get_masks(student)
    before = plain_state_dict(student)
    trainer.run(5)
    for key, value in trainer.dreamer.teacher.network.state_dict().items():
        assert torch.equal(value, teacher_before[key]), key
    assert not trainer.dreamer.teacher.network.training
    after = plain_state_dict(student)
    changed = False
    for name, mask in masks.items():
        weight = after[f"{name}.weight"]
        assert torch.all(weight[~mask] == 0), name
        changed |= not torch.equal(weight, before[f"{name}.weight"])
    assert changed  # the student did learn
    assert all(0.0 <= float(trainer.dreamer.dreams.min()) and float(trainer.dreamer.dreams.max())
               <= 1.0 for _ in [0])


def test_resume_matches_uninterrupted(tmp_path: Path) -> None:
    straight = _trainer()
    straight.run(7)
    first = _trainer()
    first.run(4, checkpoint=tmp_path / "checkpoint.pt", checkpoint_every=2)
    resumed = _trainer(seed=123)  # its own generator state is replaced by the checkpoint's
    resumed.load(tmp_path / "checkpoint.pt")
    assert resumed.step == 4
    resumed.run(7)
    a = straight.distiller.student.network.state_dict()
    b = resumed.distiller.student.network.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert torch.equal(straight.dreamer.dreams, resumed.dreamer.dreams)
    assert [h["kd"] for h in straight.history] == [h["kd"] for h in resumed.history]


class _InterruptAt:
    """A progress sink that presses Ctrl-C (SIGINT to this process) at a given step."""

    def __init__(self, step: int) -> None:
        self.step = step

    def start(self, phase: str, total: int | None, unit: str = "steps") -> None:
        pass

    def update(self, completed: int, **fields: float | str) -> None:
        if completed == self.step:
            os.kill(os.getpid(), signal.SIGINT)

    def finish(self) -> None:
        pass


def test_interrupt_saves_then_raises(tmp_path: Path) -> None:
    trainer = _trainer()
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a background job, else Python's
    with pytest.raises(KeyboardInterrupt):
        trainer.run(10, checkpoint=tmp_path / "checkpoint.pt", checkpoint_every=100,
                    progress=_InterruptAt(3))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3
    assert signal.getsignal(signal.SIGINT) is before  # the loop's handler is removed


class _NanOnSecondRound:
    """Clean targets that turn to NaN from the second round on."""

    def __init__(self) -> None:
        self.calls = 0

    def sample(self, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
        self.calls += 1
        images = torch.rand((count, 3, size, size), generator=generator)
        return images if self.calls == 1 else images * float("nan")


def test_nan_stops_naming_step_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    trainer = _trainer()
    trainer.dreamer.clean_source = _NanOnSecondRound()
    with pytest.raises(RuntimeFailure, match="at step 4"):  # round_steps=3
        trainer.run(6, checkpoint=tmp_path / "checkpoint.pt", checkpoint_every=1)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3
    assert all(torch.isfinite(v).all() for v in state["distiller"]["student"].values()
               if v.is_floating_point())


def test_checkpoint_with_nonfinite_state_is_not_written(tmp_path: Path) -> None:
    trainer = _trainer()
    checkpoint = tmp_path / "checkpoint.pt"
    trainer.run(2, checkpoint=checkpoint, checkpoint_every=1)
    good = checkpoint.read_bytes()
    weight = next(p for p in trainer.distiller.student.network.parameters())
    with torch.no_grad():
        weight.view(-1)[0] = float("inf")
    with pytest.raises(RuntimeFailure, match="non-finite values in distiller.student"):
        trainer.save(checkpoint)
    assert checkpoint.read_bytes() == good  # the last good checkpoint stays


class _SignalAt:
    def __init__(self, step: int, signum: int) -> None:
        self.step, self.signum = step, signum

    def start(self, phase: str, total: int | None, unit: str = "steps") -> None:
        pass

    def update(self, completed: int, **fields: float | str) -> None:
        if completed == self.step:
            os.kill(os.getpid(), self.signum)

    def finish(self) -> None:
        pass


def test_sigterm_finishes_the_step_saves_and_raises(tmp_path: Path) -> None:
    trainer = _trainer()
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as stop:
        trainer.run(10, checkpoint=tmp_path / "checkpoint.pt", checkpoint_every=100,
                    progress=_SignalAt(3, signal.SIGTERM))
    assert stop.value.exit_code == 143 and stop.value.checkpoint == tmp_path / "checkpoint.pt"
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is before
