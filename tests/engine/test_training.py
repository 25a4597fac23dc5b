"""The joint loop as the pipeline, ``distill`` and the Python API build and run it
(:mod:`dreamprune_cli.engine.training`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.engine.dream import DreamSchedule
from dreamprune_cli.engine.joint import CHECKPOINT_NAME, JointTrainer
from dreamprune_cli.engine.runtime import resolve_precision
from dreamprune_cli.engine.training import joint_trainer, train_joint
from dreamprune_cli.progress import NullProgress
from tests.engine.test_joint import _teacher_student

CPU = torch.device("cpu")


def _trainer(inputs: str = "dreams", seed: int = 0) -> JointTrainer:
    teacher, student = _teacher_student()
    return joint_trainer(teacher, student, make_clean_source(None),
                         DreamSchedule(batch_size=2, size=16), 3, 1e-3, 1.0,
                         torch.Generator().manual_seed(seed), CPU, resolve_precision(CPU),
                         inputs=inputs)


@pytest.mark.parametrize("inputs", ["dreams", "synthetic", "mixed", "adversarial"])
def test_the_loop_draws_the_named_inputs(inputs: str) -> None:
    trainer = _trainer(inputs)
    assert trainer.inputs.name == inputs
    assert (trainer.dreamer is None) == (inputs in ("synthetic", "adversarial"))
    if inputs == "adversarial":  # the search runs against the student the loop trains
        assert trainer.inputs.student is trainer.distiller.student


def test_train_joint_resumes_from_the_folder_checkpoint(tmp_path: Path) -> None:
    straight, earlier = train_joint(_trainer(), tmp_path / "straight", 5, 2, False,
                                    NullProgress())
    assert straight.steps == 5 and earlier == 0.0
    first = tmp_path / "first"
    first.mkdir()
    train_joint(_trainer(), first, 3, 2, False, NullProgress())
    assert (first / CHECKPOINT_NAME).is_file()
    trainer = _trainer(seed=123)  # the checkpoint's generator state replaces its own
    resumed, earlier = train_joint(trainer, first, 5, 2, True, NullProgress())
    assert resumed.steps == 5 and earlier > 0.0  # the first session's training time
    assert [h["kd"] for h in resumed.history] == [h["kd"] for h in straight.history]


def test_resume_without_a_checkpoint_starts_from_step_zero(tmp_path: Path) -> None:
    result, earlier = train_joint(_trainer(), tmp_path, 2, 100, True, NullProgress())
    assert result.steps == 2 and earlier == 0.0
