"""Where the joint loop's student inputs come from (``--inputs``).

* ``dreams`` (:class:`DreamInputs`, the method): the dreaming branch, one Adam update of the
  dreams per step (:class:`~dreamprune_cli.engine.dream.Dreamer`); the student learns on the
  dreams it scored.
* ``synthetic`` (:class:`SyntheticInputs`): procedural degraded images of the teacher's task
  (:func:`~dreamprune_cli.data.synthetic.make_degraded_batch`), a fresh batch every step; no
  teacher inversion, so a step costs one teacher forward instead of a forward and backward.
* ``mixed`` (:class:`MixedInputs`): every batch half dreams (the first ``ceil(B / 2)``
  images, the dreaming branch runs on them) and half synthetic images.
* ``adversarial`` (:class:`AdversarialInputs`): every batch synthetic images, the last
  ``floor(B / 2)`` of them moved by projected gradient ascent (PGD, Madry et al. 2018) within
  an L-infinity ball of radius ``eps`` towards where the student's output is farthest from
  the teacher's: disagreement-seeking inputs in the spirit of DFSR (Zhang et al., CVPR 2021),
  kept near the task's degraded images so they stay restorable.

A source has ``new_round()`` (called every ``round_steps`` steps), ``step()`` (the inputs, the
teacher's outputs and the source's losses), ``samples()`` (what ``dreams.png`` shows) and
``state_dict``/``load_state_dict`` (the entries it adds to the joint checkpoint). Every
random draw comes from the run's generator, so the generator state in the checkpoint makes a
resumed run end bit for bit where an uninterrupted one would (on the CPU): the synthetic
batch of a step is seeded by an integer drawn from that generator.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch

from dreamprune_cli.data.clean import CleanSource
from dreamprune_cli.data.synthetic import check_task, make_degraded_batch
from dreamprune_cli.engine.distributed import RankSync, split_batch
from dreamprune_cli.engine.dream import Dreamer, DreamSchedule, freeze
from dreamprune_cli.engine.runtime import Precision, autocast, to_memory_format
from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.adapter import RestorationAdapter

InputsKind = Literal["dreams", "synthetic", "mixed", "adversarial"]
INPUTS: tuple[str, ...] = ("dreams", "synthetic", "mixed", "adversarial")
HALVED: tuple[str, ...] = ("mixed", "adversarial")
"""The sources whose batch is two halves (so at least two images)."""
DREAMING: tuple[str, ...] = ("dreams", "mixed")
"""The sources that dream (invert the teacher), so whose runs record ``dream_init``."""

__all__ = ["DREAMING", "HALVED", "INPUTS", "AdversarialInputs", "AdversarialSettings", "DreamInputs",
           "InputSource", "InputStep", "InputsKind", "MixedInputs", "SyntheticInputs",
           "check_feature_inputs", "input_batches", "make_input_source"]


@dataclass
class InputStep:
    """One step's student inputs, the teacher's outputs on them (float32, no gradients) and
    the source's own losses (``dream``/``orth`` for dreams; ``gap`` for adversarial inputs;
    none for synthetic images)."""

    inputs: torch.Tensor
    teacher_out: torch.Tensor
    losses: dict[str, float] = field(default_factory=dict)


class InputSource(Protocol):
    """What :class:`~dreamprune_cli.engine.joint.JointTrainer` draws its inputs from."""

    name: str
    phase: str  # the progress bar's label
    per_rank: tuple[str, ...]  # state entries that differ between processes
    dreamer: Dreamer | None

    def new_round(self) -> None: ...

    def step(self) -> InputStep: ...

    def samples(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class DreamInputs:
    """The dreaming branch: the student learns on the dreams the teacher just scored."""

    name, phase, per_rank = "dreams", "dream+distill", ("dreamer",)

    def __init__(self, dreamer: Dreamer) -> None:
        self.dreamer = dreamer

    def new_round(self) -> None:
        self.dreamer.new_round()

    def step(self) -> InputStep:
        dreamed = self.dreamer.step()
        return InputStep(dreamed.dreams, dreamed.teacher_out,
                         {"dream": dreamed.dream_loss, "orth": dreamed.orth_loss})

    def samples(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """The current dreams and their clean targets."""
        dreams = self.dreamer.dreams.detach().float()
        return [("dream", dreams, self.dreamer.clean.float())] if dreams.numel() else []

    def finished_samples(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """The dreams and clean targets of the last finished round (none before the
        second round: :attr:`Dreamer.finished`)."""
        finished = self.dreamer.finished
        return [] if finished is None else [("dream", finished[0], finished[1])]

    def state_dict(self) -> dict[str, Any]:
        return {"dreamer": self.dreamer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dreamer.load_state_dict(state["dreamer"])


class SyntheticInputs:
    """A fresh batch of procedural degraded images of ``task`` every step; the teacher only
    restores them (no inversion). ``count`` images per step on this process; their scenes
    come from ``clean_source`` (procedural dead-leaves scenes by default)."""

    name, phase, per_rank = "synthetic", "synthetic+distill", ()
    dreamer = None

    def __init__(self, teacher: RestorationAdapter, task: str, count: int, size: int,
                 generator: torch.Generator, device: torch.device, precision: Precision,
                 clean_source: CleanSource | None = None) -> None:
        self.teacher = freeze(teacher)
        self.task = check_task(task)
        self.count, self.size = count, size
        self.generator = generator
        self.device, self.precision = device, precision
        self.clean_source = clean_source
        self.inputs = torch.empty(0)  # the last batch and its clean scenes (dreams.png)
        self.clean = torch.empty(0)

    def new_round(self) -> None:
        pass  # every step draws a new batch

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(degraded, clean)`` on the CPU, seeded by one draw from the run's generator."""
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        return make_degraded_batch(self.task, self.count, self.size, seed, self.clean_source)

    def step(self) -> InputStep:
        degraded, clean = self.draw()
        inputs = to_memory_format(degraded.to(self.device), self.precision)
        with torch.no_grad(), autocast(self.device, self.precision):
            restored = self.teacher(inputs)
        self.inputs, self.clean = inputs, clean
        return InputStep(inputs, restored.detach().float())

    def samples(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """The last batch and its clean scenes (none before the first step of a session)."""
        return [("synthetic", self.inputs.float(), self.clean.float())] \
            if self.inputs.numel() else []

    def state_dict(self) -> dict[str, Any]:
        return {}  # the generator (the trainer's) is all a resumed run needs

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class MixedInputs:
    """Half dreams, half synthetic images: the batch is the dreams (the dreaming branch runs
    on them) followed by the synthetic images; the losses are the dreams'."""

    name, phase, per_rank = "mixed", "dream+synthetic+distill", ("dreamer",)

    def __init__(self, dreams: DreamInputs, synthetic: SyntheticInputs) -> None:
        self.dreams, self.synthetic = dreams, synthetic
        self.dreamer = dreams.dreamer

    def new_round(self) -> None:
        self.dreams.new_round()

    def step(self) -> InputStep:
        dreamed = self.dreams.step()
        drawn = self.synthetic.step()
        return InputStep(torch.cat([dreamed.inputs, drawn.inputs]),
                         torch.cat([dreamed.teacher_out, drawn.teacher_out]), dreamed.losses)

    def samples(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        return self.dreams.samples() + self.synthetic.samples()

    def state_dict(self) -> dict[str, Any]:
        return self.dreams.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dreams.load_state_dict(state)


@dataclass(frozen=True)
class AdversarialSettings:
    """The disagreement search of ``--inputs adversarial``: ``eps``, the L-infinity radius
    of the perturbation in image intensity units (inputs lie in [0, 1]; 0.03 is about
    8/255); ``steps``, the PGD ascent steps per batch (each one student and one teacher
    forward and backward)."""

    eps: float = 0.03
    steps: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.eps <= 1.0:
            raise UsageError(f"$adversarial_eps {self.eps:g}: expected a radius in (0, 1] "
                             "(image intensities lie in [0, 1])")
        if self.steps < 1:
            raise UsageError(f"$adversarial_steps {self.steps}: expected 1 or more")

    @classmethod
    def for_inputs(cls, inputs: str, eps: float, steps: int) -> AdversarialSettings | None:
        """The search of a run on ``inputs``: these settings on ``adversarial`` inputs,
        ``None`` on any other (the values are then not checked or used)."""
        return cls(eps, steps) if inputs == "adversarial" else None

    def recorded(self) -> dict[str, Any]:
        """What a joint checkpoint of an ``adversarial`` run records (a resumed run keeps
        it)."""
        return {"adversarial_eps": self.eps, "adversarial_steps": self.steps}


def check_feature_inputs(inputs: str, lambda_feat: float) -> None:
    """The feature term pairs the teacher's features of one forward per batch half, so it
    cannot run beside the adversarial search's extra teacher forwards.

    Raises:
        UsageError: ``inputs`` ``adversarial`` with ``lambda_feat`` above 0.
    """
    if inputs == "adversarial" and lambda_feat > 0:
        raise UsageError(f"$lambda_feat {lambda_feat:g}: the feature term does not run with "
                         "$inputs adversarial (drop one of them)")


class AdversarialInputs:
    """Synthetic images, the last ``floor(B / 2)`` moved towards the student's and the
    teacher's disagreement; the losses are the search's (``gap``: the mean L1 distance
    between the two outputs at its last step, before the last move).

    The search (projected gradient ascent with a random start; Madry et al., "Towards Deep
    Learning Models Resistant to Adversarial Attacks", ICLR 2018): ``delta`` starts uniform
    in ``[-eps, eps]`` (drawn from the run's generator), then each of ``steps`` steps moves
    it by ``2.5 * eps / steps`` times the sign of the gradient of
    ``sum |student(x + delta) - teacher(x + delta)|`` (the sum, not the mean, so that the
    per-pixel gradients do not underflow under fp16 autocast; the signs are the same) and
    clips it back to the ball; the moved image ``x + delta`` is clamped to [0, 1]. Only the
    inputs get gradients: the student's weights are untouched until the distillation step
    that follows. The search runs with gradients on whatever the caller's mode (``no_grad``,
    ``inference_mode``).
    """

    name, phase, per_rank = "adversarial", "adversarial+distill", ()
    dreamer = None

    def __init__(self, synthetic: SyntheticInputs, student: torch.nn.Module,
                 settings: AdversarialSettings) -> None:
        self.synthetic = synthetic
        self.student = student
        self.settings = settings
        self.moved = torch.empty(0)  # the last step's moved images and their clean scenes
        self.clean = torch.empty(0)
        self.last_gap = float("nan")

    def new_round(self) -> None:
        pass  # every step draws a new batch

    def perturb(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` (N, C, H, W) in [0, 1] moved within the ball towards the largest
        student-teacher L1 distance; same shape, dtype and device, no gradient."""
        eps, steps = self.settings.eps, self.settings.steps
        source = self.synthetic
        noise = torch.rand(images.shape, generator=source.generator, dtype=torch.float32)
        stride = 2.5 * eps / steps
        with torch.inference_mode(False), torch.enable_grad():
            base = images.detach().clone()
            delta = ((noise * 2.0 - 1.0) * eps).to(device=base.device, dtype=base.dtype)
            for _ in range(steps):
                delta.requires_grad_(True)
                moved = (base + delta).clamp(0.0, 1.0)
                with autocast(source.device, source.precision):
                    distance = (self.student(moved).float()
                                - source.teacher(moved).float()).abs()
                grad, = torch.autograd.grad(distance.sum(), delta)
                delta = (delta.detach() + stride * grad.sign()).clamp(-eps, eps)
                self.last_gap = float(distance.detach().mean())
            moved = (base + delta).clamp(0.0, 1.0).detach()
        return to_memory_format(moved, source.precision)

    def step(self) -> InputStep:
        source = self.synthetic
        degraded, clean = source.draw()
        inputs = to_memory_format(degraded.to(source.device), source.precision)
        plain = inputs.shape[0] - inputs.shape[0] // 2
        moved = self.perturb(inputs[plain:])
        batch = torch.cat([inputs[:plain], moved])
        with torch.no_grad(), autocast(source.device, source.precision):
            restored = source.teacher(batch)
        source.inputs, source.clean = inputs[:plain], clean[:plain]
        self.moved, self.clean = moved, clean[plain:]
        return InputStep(batch, restored.detach().float(), {"gap": self.last_gap})

    def samples(self) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
        """The last batch's plain synthetic images, then its moved ones, with their clean
        scenes (none before the first step of a session)."""
        if not self.moved.numel():
            return []
        return self.synthetic.samples() + [("adversarial", self.moved.float(),
                                            self.clean.float())]

    def state_dict(self) -> dict[str, Any]:
        return {}  # the generator (the trainer's) is all a resumed run needs

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def input_batches(inputs: str, batch_size: int, sync: RankSync | None = None
                  ) -> tuple[int, int]:
    """``(dreams, synthetic)``: how many images of a global batch of ``batch_size`` each
    source gives (``mixed``: ``ceil(B / 2)`` dreams and ``floor(B / 2)`` synthetic images;
    ``adversarial``: ``B`` synthetic images, ``floor(B / 2)`` of them moved).

    Raises:
        UsageError: an unknown source; ``mixed`` or ``adversarial`` with a batch of one, or
            (several processes) a half that does not split evenly over them.
    """
    if inputs == "dreams":
        return batch_size, 0
    if inputs == "synthetic":
        split_batch(batch_size, sync)
        return 0, batch_size
    if inputs not in HALVED:
        raise UsageError(f"$inputs {inputs!r}: expected one of {', '.join(INPUTS)}")
    halves = "dreams and synthetic images" if inputs == "mixed" else \
        "plain and moved synthetic images"
    if batch_size < 2:
        raise UsageError(f"$inputs {inputs}: $batch_size {batch_size} cannot be split into "
                         f"{halves}; pass $batch_size 2 or more")
    second = batch_size // 2
    first = batch_size - second
    if sync is not None and (first % sync.world_size or second % sync.world_size):
        raise UsageError(f"$inputs {inputs}: $batch_size {batch_size} splits into {first} and "
                         f"{second} ({halves}), each shared by the {sync.world_size} "
                         f"processes; pass a multiple of {2 * sync.world_size}")
    return (first, second) if inputs == "mixed" else (0, batch_size)


def make_input_source(inputs: str, teacher: RestorationAdapter, clean_source: CleanSource,
                      schedule: DreamSchedule, generator: torch.Generator,
                      device: torch.device, precision: Precision,
                      sync: RankSync | None = None, student: torch.nn.Module | None = None,
                      adversarial: AdversarialSettings | None = None) -> InputSource:
    """The source ``inputs`` names, drawing from ``generator``: batches of
    ``schedule.batch_size`` images of ``schedule.size`` px in all (``batch_size / N`` on each
    of N processes), synthetic ones of the teacher's task. ``adversarial`` needs the
    ``student`` (the module the distiller trains, unwrapped) and takes its search from
    ``adversarial`` (default :class:`AdversarialSettings`).

    Raises:
        UsageError: as :func:`input_batches`; a teacher whose task has no synthesizer;
            ``adversarial`` without a student.
    """
    dreams, synthetic = input_batches(inputs, schedule.batch_size, sync)
    if inputs == "dreams":
        return DreamInputs(Dreamer(teacher, clean_source, schedule, generator, device,
                                   precision, sync))
    drawn = SyntheticInputs(teacher, teacher.info.task, split_batch(synthetic, sync),
                            schedule.size, generator, device, precision, clean_source)
    if inputs == "synthetic":
        return drawn
    if inputs == "adversarial":
        if student is None:
            raise UsageError("$inputs adversarial: the source needs the student it searches "
                             "against")
        return AdversarialInputs(drawn, student, adversarial or AdversarialSettings())
    half = dataclasses.replace(schedule, batch_size=dreams)
    return MixedInputs(DreamInputs(Dreamer(teacher, clean_source, half, generator, device,
                                           precision, sync)), drawn)
