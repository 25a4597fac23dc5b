"""The joint loop's input sources (``--inputs``): dreams, synthetic degraded images, mixed."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.data.synthetic import make_degraded_batch
from dreamprune_cli.engine.distill import Distiller
from dreamprune_cli.engine.dream import DreamSchedule
from dreamprune_cli.engine.inputs import (DreamInputs, MixedInputs, SyntheticInputs,
                                          input_batches, make_input_source)
from dreamprune_cli.engine.joint import JointTrainer
from dreamprune_cli.engine.runtime import resolve_precision
from dreamprune_cli.errors import UsageError
from dreamprune_cli.report import save_loss_history
from tests.engine.test_joint import _teacher_student

CPU = torch.device("cpu")
PRECISION = resolve_precision(CPU)


def _trainer(inputs: str, seed: int = 0, batch_size: int = 2) -> JointTrainer:
    teacher, student = _teacher_student()
    generator = torch.Generator().manual_seed(seed)
    schedule = DreamSchedule(batch_size=batch_size, size=16)
    source = make_input_source(inputs, teacher, make_clean_source(None), schedule, generator,
                               CPU, PRECISION)
    distiller = Distiller(student, 1e-3, 1.0, CPU, PRECISION)
    return JointTrainer(source, distiller, round_steps=3, generator=generator)


@pytest.mark.parametrize("inputs, kind", [("dreams", DreamInputs),
                                          ("synthetic", SyntheticInputs),
                                          ("mixed", MixedInputs)])
def test_each_source_gives_a_batch_in_the_unit_range(inputs: str, kind: type) -> None:
    trainer = _trainer(inputs, batch_size=3)
    source = trainer.inputs
    assert isinstance(source, kind) and source.name == inputs
    assert (trainer.dreamer is None) == (inputs == "synthetic")
    source.new_round()
    step = source.step()
    assert step.inputs.shape == (3, 3, 16, 16) and step.teacher_out.shape == (3, 3, 16, 16)
    assert 0.0 <= float(step.inputs.min()) and float(step.inputs.max()) <= 1.0
    assert torch.isfinite(step.teacher_out).all() and not step.teacher_out.requires_grad
    assert set(step.losses) == (set() if inputs == "synthetic" else {"dream", "orth"})
    if inputs == "mixed":  # ceil(3 / 2) dreams first, then floor(3 / 2) synthetic images
        assert source.dreamer.dreams.shape[0] == 2 and source.synthetic.inputs.shape[0] == 1
        assert torch.equal(step.inputs[2:], source.synthetic.inputs)
    shown = source.samples()
    assert sum(images.shape[0] for _, images, _ in shown) == 3
    assert all(images.shape == clean.shape for _, images, clean in shown)


def test_synthetic_inputs_are_degraded_scenes_of_the_task() -> None:
    """A synthetic batch is make_degraded_batch's: degraded scenes that differ from their
    clean scenes, a new batch every step, and the same batches from the same seed."""
    teacher, _ = _teacher_student()

    def drawn(seed: int, task: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
        source = SyntheticInputs(teacher, task, 4, 32, torch.Generator().manual_seed(seed),
                                 CPU, PRECISION)
        batches = []
        for _ in range(2):
            source.step()
            batches.append((source.inputs.clone(), source.clean.clone()))
        return batches

    for task in ("derain", "dehaze"):
        first, second = drawn(0, task)
        for degraded, clean in (first, second):
            assert degraded.shape == clean.shape == (4, 3, 32, 32)
            assert float((degraded - clean).abs().mean()) > 0.01, task  # not the clean scene
        assert not torch.equal(first[0], second[0])  # a fresh batch every step
        again = drawn(0, task)
        assert all(torch.equal(a[0], b[0]) for a, b in zip(again, (first, second)))
    # the seed of a step is one draw of the run's generator
    generator = torch.Generator().manual_seed(7)
    source = SyntheticInputs(teacher, "derain", 2, 16, generator, CPU, PRECISION)
    seed = int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(7)))
    degraded, clean = source.draw()
    expected, expected_clean = make_degraded_batch("derain", 2, 16, seed)
    assert torch.equal(degraded, expected) and torch.equal(clean, expected_clean)


def test_synthetic_history_and_loss_plot(tmp_path: Path) -> None:
    trainer = _trainer("synthetic")
    before = {k: v.clone() for k, v in trainer.distiller.student.network.state_dict().items()}
    result = trainer.run(2)
    assert [sorted(h) for h in result.history] == [["kd", "step"]] * 2
    after = trainer.distiller.student.network.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the student learned
    save_loss_history(tmp_path, result.history, "distill (online, synthetic)")
    assert (tmp_path / "losses.csv").read_text().splitlines()[0] == "step,kd"
    assert (tmp_path / "losses.png").is_file()


@pytest.mark.parametrize("inputs", ["synthetic", "mixed"])
def test_resume_matches_uninterrupted(tmp_path: Path, inputs: str) -> None:
    """4 steps straight = 2 steps, a checkpoint, a resume to 4 (round_steps 3: mixed starts
    a new round of dreams after the resume), bit for bit."""
    straight = _trainer(inputs)
    straight.run(4)
    first = _trainer(inputs)
    first.run(2, checkpoint=tmp_path / "checkpoint.pt", checkpoint_every=2)
    resumed = _trainer(inputs, seed=123)  # its generator state comes from the checkpoint
    resumed.load(tmp_path / "checkpoint.pt")
    assert resumed.step == 2
    resumed.run(4)
    a = straight.distiller.student.network.state_dict()
    b = resumed.distiller.student.network.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.history == resumed.history
    if inputs == "mixed":
        assert torch.equal(straight.dreamer.dreams, resumed.dreamer.dreams)


def test_a_checkpoint_resumes_only_on_its_inputs(tmp_path: Path) -> None:
    dreams = _trainer("dreams")
    dreams.run(1, checkpoint=tmp_path / "checkpoint.pt")
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["inputs"] == "dreams"
    with pytest.raises(UsageError, match=r"^inputs synthetic: .* inputs dreams"):
        _trainer("synthetic").load(tmp_path / "checkpoint.pt")
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["inputs"]  # a checkpoint written before --inputs: dreams
    torch.save(state, tmp_path / "old.pt")
    _trainer("dreams").load(tmp_path / "old.pt")
    with pytest.raises(UsageError, match="^inputs mixed"):
        _trainer("mixed").load(tmp_path / "old.pt")


def test_input_batches() -> None:
    assert input_batches("dreams", 5) == (5, 0)
    assert input_batches("synthetic", 5) == (0, 5)
    assert input_batches("mixed", 5) == (3, 2)
    assert input_batches("mixed", 2) == (1, 1)
    with pytest.raises(UsageError, match="^inputs mixed: batch_size 1"):
        input_batches("mixed", 1)
    two = SimpleNamespace(world_size=2)
    assert input_batches("mixed", 4, two) == (2, 2)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="pass a multiple of 4"):
        input_batches("mixed", 6, two)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="^inputs 'noise'"):
        input_batches("noise", 4)
