"""Dreaming: optimise noise images so that the frozen teacher maps them to clean targets.

Each step updates a batch ``x`` (image space, kept in [0, 1] by clamping) with Adam on
``L_dream + lambda_orth * L_orth`` (METHOD.md), optionally plus ``lambda_tv * L_tv`` (a
total-variation prior) and minus ``lambda_far * L_far`` (a reward for coarse distance from the
clean target), which together turn the bundled dehazer's noisy dreams into veiled, hazy ones
(docs/RESULTS.md; both 0 by default, set in the FFA preset). Every round starts from fresh
uniform noise and fresh clean targets drawn from a
:class:`~dreamprune_cli.data.clean.CleanSource` (``dream_init = "noise"``, the method), or
(``dream_init = "synthetic"``) from synthetic degraded images of the teacher's task and
their clean scenes as targets (:func:`~dreamprune_cli.data.synthetic.make_degraded_batch`,
the source of ``--inputs synthetic``), so that inversion refines realistic rain or haze. All
randomness comes from one ``torch.Generator`` on the CPU, so a run is reproducible and
resumable bit for bit on the CPU.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch
from torch import nn

from dreamprune_cli.data.clean import CleanSource
from dreamprune_cli.data.noise import fractal_noise
from dreamprune_cli.data.synthetic import check_task, make_degraded_batch
from dreamprune_cli.engine.distributed import (RankSync, merge_rank_batches, rank_state,
                                               split_batch)
from dreamprune_cli.engine.runtime import Precision, autocast, make_scaler, to_memory_format
from dreamprune_cli.engine.features import PenultimateFeatures
from dreamprune_cli.engine.losses import (Representation, coarse_distance,
                                          degradation_representation, dream_loss,
                                          mean_pairwise_cosine, orth_loss, tv_loss)
from dreamprune_cli.errors import Interrupted, RuntimeFailure, UsageError
from dreamprune_cli.interrupts import deferred_interrupt
from dreamprune_cli.models.adapter import RestorationAdapter
from dreamprune_cli.progress import NullProgress, ProgressSink

log = logging.getLogger(__name__)

DreamInit = Literal["uniform", "gray", "smooth"]
DreamStart = Literal["noise", "synthetic"]
DREAM_STARTS: tuple[str, ...] = ("noise", "synthetic")


def initial_dreams(init: DreamInit, count: int, size: int,
                   generator: torch.Generator) -> torch.Tensor:
    """The images a round of dreaming starts from, ``(count, 3, size, size)`` float32 in
    [0, 1] on the CPU: ``uniform`` noise (the method), a near-``gray`` image (0.5 +- 0.05), or
    ``smooth`` 1/f noise around grey (0.5 + 0.15 x unit-std noise, clamped)."""
    if init == "uniform":
        return torch.rand((count, 3, size, size), generator=generator)
    if init == "gray":
        noise = torch.rand((count, 3, size, size), generator=generator) - 0.5
        return (0.5 + 0.1 * noise).clamp(0, 1)
    if init == "smooth":
        return (0.5 + 0.15 * fractal_noise(count, 3, size, generator, slope=1.5)).clamp(0, 1)
    raise ValueError(f"dream init {init!r}: expected uniform, gray or smooth")


@dataclass(frozen=True)
class DreamSchedule:
    """Hyper-parameters of the dreaming branch (METHOD.md defaults)."""

    noise_lr: float = 5e-2
    lambda_orth: float = 0.05
    lambda_tv: float = 0.0
    lambda_far: float = 0.0
    far_pool: int = 8
    representation: Representation = "gram"
    batch_size: int = 8
    size: int = 64
    init: DreamInit = "uniform"  # the noise a round starts from (:func:`initial_dreams`)
    dream_init: DreamStart = "noise"  # noise (``init``), or synthetic degraded images

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> DreamSchedule:
        """The schedule from a mapping with (at least) its field names, e.g. the dream
        settings' ``model_dump()``; other keys are ignored, so a new field travels from the
        settings to the engine by its name alone."""
        return cls(**{f.name: values[f.name] for f in fields(cls)
                      if f.name in values})


@dataclass
class DreamStep:
    """What one dreaming step produced: the input it scored and the teacher's output."""

    dreams: torch.Tensor
    teacher_out: torch.Tensor
    dream_loss: float
    orth_loss: float


def freeze(network: nn.Module) -> nn.Module:
    """Eval mode and no gradients for the teacher's parameters (its weights never change)."""
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network


def check_finite(step: int, **losses: float) -> None:
    """Stop with a clear error naming the step when a loss is NaN or infinite."""
    for name, value in losses.items():
        if not math.isfinite(value):
            raise RuntimeFailure(f"{name} loss is {value} at step {step}: stopping "
                                 "(try a lower learning rate)")


class Dreamer:
    """One batch of dreams and its optimiser; ``new_round`` restarts from noise.

    ``sync`` (several processes): this rank dreams ``batch_size / N`` of the batch, and
    ``L_orth`` is taken over the whole batch of every rank, with gradients
    (:mod:`dreamprune_cli.engine.distributed`).
    """

    def __init__(self, teacher: RestorationAdapter, clean_source: CleanSource,
                 schedule: DreamSchedule, generator: torch.Generator, device: torch.device,
                 precision: Precision, sync: RankSync | None = None) -> None:
        self.teacher = freeze(teacher)
        self.clean_source = clean_source
        self.schedule = schedule
        self.generator = generator
        self.device = device
        self.precision = precision
        self.sync = sync
        self.batch_size = split_batch(schedule.batch_size, sync)
        if schedule.dream_init not in DREAM_STARTS:
            raise UsageError(f"$dream_init {schedule.dream_init!r}: expected one of "
                             f"{', '.join(DREAM_STARTS)}")
        self.task = check_task(teacher.info.task) if schedule.dream_init == "synthetic" \
            else None  # the synthesizer of the seeded starts
        self.scaler = make_scaler(device, precision)
        self.dreams = torch.empty(0)
        self.clean = torch.empty(0)
        self.optimizer: torch.optim.Optimizer | None = None
        self.finished: tuple[torch.Tensor, torch.Tensor] | None = None
        """The dreams and clean targets of the last round ``new_round`` ended (CPU copies,
        ``(B, 3, S, S)``), for pictures; ``None`` before the second round."""

    def new_round(self) -> None:
        """Fresh clean targets and starting images, ``(B, 3, S, S)`` in [0, 1] drawn on the
        CPU for reproducibility (``batch_size / N`` of each under several processes).

        ``dream_init = "noise"`` (the method): targets from the clean source, uniform noise
        (or the schedule's ``init``). ``"synthetic"``: one seed drawn from the generator
        gives :func:`~dreamprune_cli.data.synthetic.make_degraded_batch`'s degraded images of
        the teacher's task (the first dreams, exactly: the dreams are optimised in image
        space, kept in [0, 1] by clamping) and their clean scenes (the targets).
        """
        size, batch = self.schedule.size, self.batch_size
        if self.dreams.numel():  # the round that ends: kept for pictures (dreams.png)
            self.finished = (self.dreams.detach().float().cpu().clone(),
                             self.clean.float().cpu().clone())
        if self.task is not None:
            seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
            start, clean = make_degraded_batch(self.task, batch, size, seed, self.clean_source)
        else:
            clean = self.clean_source.sample(batch, size, self.generator)
            start = initial_dreams(self.schedule.init, batch, size, self.generator)
        self.clean = to_memory_format(clean.to(self.device), self.precision)
        self.dreams = to_memory_format(start.to(self.device), self.precision).requires_grad_()
        self.optimizer = torch.optim.Adam([self.dreams], lr=self.schedule.noise_lr)

    def step(self) -> DreamStep:
        """One Adam update of the dreams; returns the pre-update dreams and ``T(dreams)``."""
        if self.optimizer is None:
            self.new_round()
        assert self.optimizer is not None
        schedule = self.schedule
        use_orth = schedule.lambda_orth > 0
        scored = self.dreams.detach().clone()
        with autocast(self.device, self.precision):
            if use_orth:
                with PenultimateFeatures(self.teacher.network,
                                         self.teacher.info.penultimate_layer) as hook:
                    restored = self.teacher(self.dreams)
                features = hook.features
            else:
                restored = self.teacher(self.dreams)
        loss_dream = dream_loss(restored.float(), self.clean)
        loss_orth = orth_loss(features, schedule.representation,
                              None if self.sync is None else self.sync.gather_rows) \
            if use_orth else loss_dream.new_zeros(())
        total = loss_dream + schedule.lambda_orth * loss_orth
        if schedule.lambda_tv > 0:
            total = total + schedule.lambda_tv * tv_loss(self.dreams)
        if schedule.lambda_far > 0:
            total = total - schedule.lambda_far * coarse_distance(self.dreams, self.clean,
                                                                  schedule.far_pool)
        if self.sync is not None:  # the gradient of the whole batch's objective (see sync)
            total = total / self.sync.world_size
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():
            self.dreams.clamp_(0.0, 1.0)
        return DreamStep(scored, restored.detach().float(), float(loss_dream.detach()),
                         float(loss_orth.detach()))

    def state_dict(self) -> dict[str, Any]:
        return {"dreams": self.dreams.detach().cpu(), "clean": self.clean.cpu(),
                "optimizer": self.optimizer.state_dict() if self.optimizer else None,
                "scaler": self.scaler.state_dict(), "finished": self.finished}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.clean = to_memory_format(state["clean"].to(self.device), self.precision)
        self.dreams = to_memory_format(state["dreams"].to(self.device),
                                       self.precision).requires_grad_()
        self.optimizer = torch.optim.Adam([self.dreams], lr=self.schedule.noise_lr)
        if state["optimizer"] is not None:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.finished = state.get("finished")  # absent from checkpoints of earlier versions


@dataclass
class DreamResult:
    """Dreamed images, their clean targets, the teacher's restorations and the losses."""

    dreams: torch.Tensor
    clean: torch.Tensor
    restored: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    diversity: float = float("nan")
    final_dream_loss: float = float("nan")
    final_orth_loss: float = float("nan")


def teacher_features(teacher: RestorationAdapter, images: torch.Tensor, device: torch.device,
                     representation: Representation, batch_size: int = 16
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Restorations and penultimate representations of ``images`` (no gradients); the
    representations are ``None`` for a model without a penultimate layer."""
    layer = teacher.info.penultimate_layer
    outputs, reps = [], []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start:start + batch_size].to(device)
            if layer is None:
                outputs.append(teacher(chunk).float().cpu())
                continue
            with PenultimateFeatures(teacher.network, layer) as hook:
                outputs.append(teacher(chunk).float().cpu())
            reps.append(degradation_representation(hook.features, representation).cpu())
    return torch.cat(outputs), (torch.cat(reps) if reps else None)


def diversity_of(teacher: RestorationAdapter, dreams: torch.Tensor, device: torch.device,
                 representation: Representation) -> tuple[torch.Tensor, float]:
    """Teacher restorations of ``dreams`` and their mean pairwise cosine similarity (NaN
    for a model without a penultimate layer: nothing to compare)."""
    restored, reps = teacher_features(teacher, dreams, device, representation)
    return restored, (mean_pairwise_cosine(reps) if reps is not None else float("nan"))


def dream_images(teacher: RestorationAdapter, clean_source: CleanSource, count: int,
                 steps: int, schedule: DreamSchedule, generator: torch.Generator,
                 device: torch.device, precision: Precision,
                 progress: ProgressSink | None = None,
                 resume_state: dict[str, Any] | None = None,
                 on_batch_done: Callable[[dict[str, Any]], None] | None = None,
                 save_every: int = 50, sync: RankSync | None = None) -> DreamResult:
    """Dream ``count`` images in batches of ``schedule.batch_size``, ``steps`` steps each.

    Args:
        resume_state: what ``on_batch_done`` was last given, to continue an interrupted run
            exactly where it stopped (on the CPU, bit for bit).
        on_batch_done: called with a resumable state dict (finished batches, the batch in
            progress with its optimiser, the generator's state, the history) after every
            batch, every ``save_every`` steps within a batch, and when Ctrl-C or SIGTERM stops
            the run. When given, either signal finishes the current step, saves, and raises
            :class:`~dreamprune_cli.errors.Interrupted` (a ``KeyboardInterrupt``; exit code
            130 or 143).
        save_every: steps between saves within a batch.
        sync: one of several processes: each batch is dreamed by every rank,
            ``batch_size / N`` images each (:class:`Dreamer`); ``on_batch_done`` gets every
            rank's state (:meth:`~dreamprune_cli.engine.distributed.RankSync.gather_state`)
            and ``resume_state`` is such a state; the losses are the ranks' means and the
            result holds every rank's dreams, batch by batch in rank order.
    """
    progress = progress or NullProgress()
    dreamer = Dreamer(teacher, clean_source, schedule, generator, device, precision, sync)
    batches = math.ceil(count / schedule.batch_size)
    done: list[tuple[torch.Tensor, torch.Tensor]] = []
    history: list[dict[str, float]] = []
    current: dict[str, Any] | None = None
    if resume_state is not None:
        resume_state = rank_state(resume_state, sync)
        done = list(zip(resume_state["dreams"], resume_state["clean"]))
        history = list(resume_state["history"])
        generator.set_state(resume_state["generator"])
        current = resume_state.get("current")

    def state(batch: int | None = None, step: int = 0) -> dict[str, Any]:
        """Everything needed to continue; ``batch`` is the one in progress, if any."""
        return {"dreams": [d for d, _ in done], "clean": [c for _, c in done],
                "history": list(history), "generator": generator.get_state(),
                "current": None if batch is None else
                {"batch": batch, "step": step, "dreamer": dreamer.state_dict()}}

    save = on_batch_done if sync is None or on_batch_done is None else (
        lambda state: on_batch_done(sync.gather_state(
            state, per_rank=("dreams", "clean", "generator", "current"))))
    progress.start("dream", batches * steps)
    last = DreamStep(torch.empty(0), torch.empty(0), float("nan"), float("nan"))
    guard = deferred_interrupt() if on_batch_done is not None else contextlib.nullcontext(
        lambda: None)
    with guard as interrupted:
        poll = interrupted if sync is None else lambda: sync.first_signal(interrupted())
        for batch in range(len(done), batches):
            first_step = 0
            if current is not None and current["batch"] == batch:
                dreamer.load_state_dict(current["dreamer"])
                first_step, current = int(current["step"]), None
            else:
                dreamer.new_round()
            progress.update(batch * steps + first_step)
            for step in range(first_step, steps):
                last = dreamer.step()
                global_step = batch * steps + step + 1
                dream, orth = (last.dream_loss, last.orth_loss) if sync is None else \
                    sync.mean(last.dream_loss, last.orth_loss)
                check_finite(global_step, dream=dream, orth=orth)
                history.append({"step": global_step, "dream": dream, "orth": orth})
                progress.update(global_step, dream=dream, orth=orth)
                if on_batch_done is None or step + 1 == steps:
                    continue
                signal_number = poll()
                if signal_number:
                    save(state(batch, step + 1))
                    log.warning("interrupted at step %d of %d (batch %d of %d); progress saved",
                                step + 1, steps, batch + 1, batches)
                    progress.finish()
                    raise Interrupted(signal_number)
                if (step + 1) % save_every == 0:
                    save(state(batch, step + 1))
            done.append((dreamer.dreams.detach().cpu().clone(), dreamer.clean.cpu().clone()))
            if save is not None:
                save(state())
                signal_number = poll()
                if signal_number and batch + 1 < batches:
                    log.warning("interrupted after batch %d of %d; progress saved",
                                batch + 1, batches)
                    progress.finish()
                    raise Interrupted(signal_number)
    progress.finish()
    if sync is not None:
        done = merge_rank_batches(sync, done)
    dreams = torch.cat([d for d, _ in done])[:count].contiguous()
    clean = torch.cat([c for _, c in done])[:count].contiguous()
    restored, diversity = diversity_of(teacher, dreams, device, schedule.representation)
    final = history[-1] if history else {"dream": float("nan"), "orth": float("nan")}
    return DreamResult(dreams=dreams, clean=clean, restored=restored, history=history,
                       diversity=diversity, final_dream_loss=final["dream"],
                       final_orth_loss=final["orth"])
