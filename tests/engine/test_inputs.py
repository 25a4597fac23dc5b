"""The joint loop's input sources (``--inputs``): dreams, synthetic degraded images, mixed,
adversarial."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.data.synthetic import make_degraded_batch
from dreamprune_cli.engine.distill import Distiller
from dreamprune_cli.engine.dream import DreamSchedule
from dreamprune_cli.engine.inputs import (AdversarialInputs, AdversarialSettings, DreamInputs,
                                          MixedInputs, SyntheticInputs, check_feature_inputs,
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
                               CPU, PRECISION, student=student)
    distiller = Distiller(student, 1e-3, 1.0, CPU, PRECISION)
    return JointTrainer(source, distiller, round_steps=3, generator=generator)


@pytest.mark.parametrize("inputs, kind", [("dreams", DreamInputs),
                                          ("synthetic", SyntheticInputs),
                                          ("mixed", MixedInputs),
                                          ("adversarial", AdversarialInputs)])
def test_each_source_gives_a_batch_in_the_unit_range(inputs: str, kind: type) -> None:
    trainer = _trainer(inputs, batch_size=3)
    source = trainer.inputs
    assert isinstance(source, kind) and source.name == inputs
    assert (trainer.dreamer is None) == (inputs in ("synthetic", "adversarial"))
    source.new_round()
    step = source.step()
    assert step.inputs.shape == (3, 3, 16, 16) and step.teacher_out.shape == (3, 3, 16, 16)
    assert 0.0 <= float(step.inputs.min()) and float(step.inputs.max()) <= 1.0
    assert torch.isfinite(step.teacher_out).all() and not step.teacher_out.requires_grad
    assert set(step.losses) == {"synthetic": set(), "adversarial": {"gap"}}.get(
        inputs, {"dream", "orth"})
    if inputs == "mixed":  # ceil(3 / 2) dreams first, then floor(3 / 2) synthetic images
        assert source.dreamer.dreams.shape[0] == 2 and source.synthetic.inputs.shape[0] == 1
        assert torch.equal(step.inputs[2:], source.synthetic.inputs)
    if inputs == "adversarial":  # ceil(3 / 2) plain synthetic images, then floor(3 / 2) moved
        assert torch.equal(step.inputs[:2], source.synthetic.inputs)
        assert torch.equal(step.inputs[2:], source.moved)
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


@pytest.mark.parametrize("inputs", ["synthetic", "mixed", "adversarial"])
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


class _Twice(torch.nn.Module):
    """A "student" whose output is twice its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x


def _adversarial(eps: float, steps: int) -> AdversarialInputs:
    synthetic = SyntheticInputs(torch.nn.Identity(), "derain", 4, 8,
                                torch.Generator().manual_seed(0), CPU, PRECISION)
    return AdversarialInputs(synthetic, _Twice(), AdversarialSettings(eps, steps))


@pytest.mark.parametrize("steps", [1, 3])
def test_the_search_moves_each_pixel_to_the_edge_of_the_ball(steps: int) -> None:
    """Teacher x, student 2x: the gap mean |2x - x| = mean |x| grows with every positive
    pixel, so each ascent step of 2.5 eps / steps pushes the move towards +eps, where the
    clip holds it; from 0.5 the moved image is 0.5 + eps exactly, whatever the random
    start in [-eps, eps] (hand-computed: -eps + 2.5 eps > eps), and the gap is the mean of
    the last step's start, 0.5 + min(start + 2 * 2.5 eps / 3, eps) >= 0.5 + eps / 3 with
    three steps."""
    source = _adversarial(0.05, steps)
    images = torch.full((2, 3, 8, 8), 0.5)
    moved = source.perturb(images)
    assert moved.shape == images.shape and not moved.requires_grad
    assert torch.allclose(moved, torch.full_like(images, 0.55))
    if steps == 3:
        assert 0.5 + 0.05 / 3 - 1e-6 <= source.last_gap <= 0.55 + 1e-6


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_the_search_runs_whatever_the_callers_grad_mode(mode) -> None:
    """perturb and step search with gradients on inside no_grad and inference_mode too."""
    source = _adversarial(0.05, 1)
    with mode():
        moved = source.perturb(torch.full((1, 3, 8, 8), 0.5))
        step = source.step()
    assert torch.allclose(moved, torch.full_like(moved, 0.55))
    assert step.inputs.shape == (4, 3, 8, 8) and step.losses["gap"] >= 0.0


def test_the_search_ascends_the_summed_distance() -> None:
    """The ascent follows the sign of the summed distance's gradient, which the mean's
    shares; the reported gap is the mean: teacher x, student 2x, images 0.5 + start."""
    source = _adversarial(0.05, 2)
    source.perturb(torch.full((2, 3, 8, 8), 0.5))
    assert 0.5 <= source.last_gap <= 0.55 + 1e-6  # the mean |x|, not the sum over 384 pixels


def test_the_search_stays_in_the_unit_range() -> None:
    """Near 1 the move is clamped to the image range: 0.99 + 0.05 stays 1."""
    moved = _adversarial(0.05, 1).perturb(torch.full((1, 3, 8, 8), 0.99))
    assert float(moved.max()) == 1.0 and float(moved.min()) == 1.0


def test_the_search_leaves_the_student_untouched() -> None:
    """Only the inputs get gradients: no parameter of the student gains a .grad."""
    teacher, student = _teacher_student()
    synthetic = SyntheticInputs(teacher, "derain", 2, 16, torch.Generator().manual_seed(0),
                                CPU, PRECISION)
    source = AdversarialInputs(synthetic, student, AdversarialSettings(0.03, 2))
    images = synthetic.draw()[0]
    moved = source.perturb(images)
    assert float((moved - images).abs().max()) <= 0.03 + 1e-6
    assert all(p.grad is None for p in student.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_adversarial_settings_and_their_refusals() -> None:
    assert AdversarialSettings().recorded() == {"adversarial_eps": 0.03, "adversarial_steps": 1}
    with pytest.raises(UsageError, match=r"^adversarial_eps 0: expected a radius in \(0, 1\]"):
        AdversarialSettings(0.0, 1)
    with pytest.raises(UsageError, match="^adversarial_steps 0: expected 1 or more"):
        AdversarialSettings(0.03, 0)
    with pytest.raises(UsageError, match="^lambda_feat 0.5: the feature term does not run "
                                         "with inputs adversarial"):
        check_feature_inputs("adversarial", 0.5)
    check_feature_inputs("adversarial", 0.0)
    check_feature_inputs("synthetic", 0.5)
    teacher, _ = _teacher_student()
    with pytest.raises(UsageError, match="^inputs adversarial: the source needs the student"):
        make_input_source("adversarial", teacher, make_clean_source(None),
                          DreamSchedule(batch_size=2, size=16), torch.Generator(), CPU,
                          PRECISION)


def test_an_adversarial_checkpoint_resumes_only_with_its_search(tmp_path: Path) -> None:
    first = _trainer("adversarial")
    first.run(1, checkpoint=tmp_path / "checkpoint.pt")
    recorded = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["recorded"]
    assert recorded["adversarial_eps"] == 0.03 and recorded["adversarial_steps"] == 1
    other = _trainer("adversarial")
    other.inputs.settings = AdversarialSettings(0.06, 1)
    with pytest.raises(UsageError, match="^adversarial_eps 0.06: the checkpoint .* with "
                                         "adversarial_eps 0.03"):
        other.load(tmp_path / "checkpoint.pt")


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
    assert input_batches("adversarial", 5) == (0, 5)
    with pytest.raises(UsageError, match="^inputs adversarial: batch_size 1 cannot be split "
                                         "into plain and moved synthetic images"):
        input_batches("adversarial", 1)
    with pytest.raises(UsageError, match="pass a multiple of 4"):
        input_batches("adversarial", 6, two)  # type: ignore[arg-type]
