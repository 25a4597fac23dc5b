"""Distillation of a masked student onto the teacher's outputs.

The student trains in eval mode (normalisation layers keep the teacher's statistics; the
dreams are not the teacher's data) and its pruning masks are parametrizations, so pruned
weights stay exactly zero however long it trains.

How the student's learning rate and weights evolve over a run is a
:class:`StudentSchedule`: a constant learning rate (the method) or a linear warm-up and a
cosine decay (``torch.optim.lr_scheduler.LambdaLR``), and optionally an exponential moving
average of the weights (``torch.optim.swa_utils.AveragedModel`` with
``get_ema_multi_avg_fn``), which is what the run keeps as its student. Both are part of
:meth:`Distiller.state_dict`, so a resumed run ends bit for bit where an uninterrupted one
would on the CPU.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from dreamprune_cli.engine.distributed import RankSync
from dreamprune_cli.engine.runtime import autocast, make_scaler, Precision
from dreamprune_cli.engine.dream import check_finite
from dreamprune_cli.engine.feature_distill import FeatureCalls, FeatureDistillation
from dreamprune_cli.engine.losses import distill_loss
from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.adapter import RestorationAdapter
from dreamprune_cli.progress import NullProgress, ProgressSink

log = logging.getLogger(__name__)

LrSchedule = Literal["constant", "cosine"]
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")


@dataclass(frozen=True)
class StudentSchedule:
    """How the student's learning rate and weights evolve over a run of ``total_steps``
    updates (the defaults are the method: a constant learning rate, no averaging).

    * ``lr_schedule``: ``constant``, or ``cosine``: the learning rate ``lr`` times
      :meth:`lr_factor`, a cosine decay from 1 to ``lr_min_ratio`` over the updates after
      the warm-up, reaching ``lr_min_ratio`` after the last one.
    * ``warmup_steps``: the first ``W`` updates ramp linearly, update ``k`` (1-based) at
      ``k / W`` of the rate (with ``constant``: a warm-up, then the constant rate).
    * ``ema_decay``: ``d`` in [0, 1); above 0 the run keeps an exponential moving average of
      the weights, ``ema_1 = w_1``, ``ema_k = d * ema_{k-1} + (1 - d) * w_k`` after update
      ``k``, and that average is the student it saves and scores.

    Raises:
        UsageError: a value out of range, or ``cosine`` with ``warmup_steps`` not below
            ``total_steps`` (nothing left to decay over).
    """

    lr_schedule: LrSchedule = "constant"
    warmup_steps: int = 0
    lr_min_ratio: float = 0.01
    ema_decay: float = 0.0
    total_steps: int = 0  # the run's updates (joint steps, or offline steps)

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(f"$lr_schedule {self.lr_schedule!r}: expected one of "
                             f"{', '.join(LR_SCHEDULES)}")
        if self.warmup_steps < 0:
            raise UsageError(f"$warmup_steps {self.warmup_steps}: expected 0 or more")
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            raise UsageError(f"$lr_min_ratio {self.lr_min_ratio}: expected a fraction in "
                             "[0, 1]")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UsageError(f"$ema_decay {self.ema_decay}: expected a value in [0, 1)")
        if self.lr_schedule == "cosine" and self.warmup_steps >= self.total_steps:
            raise UsageError(f"$warmup_steps {self.warmup_steps}: the cosine schedule needs "
                             f"updates after the warm-up, and the run has {self.total_steps} "
                             "$steps")

    @classmethod
    def from_values(cls, values: Mapping[str, Any], total_steps: int) -> StudentSchedule:
        """The schedule of a run of ``total_steps`` from a mapping with (at least) its field
        names, e.g. the distill settings' ``model_dump()``; other keys are ignored."""
        return cls(**{f.name: values[f.name] for f in fields(cls)
                      if f.name in values and f.name != "total_steps"},
                   total_steps=total_steps)

    @property
    def scheduled(self) -> bool:
        """Whether the learning rate changes over the run (a ``LambdaLR`` is needed)."""
        return self.lr_schedule != "constant" or self.warmup_steps > 0

    def lr_factor(self, done: int) -> float:
        """The factor of the base learning rate for the update after ``done`` updates
        (``LambdaLR``'s epoch counter: 0 for the first update).

        ``done < W``: ``(done + 1) / W``; then ``constant``: 1; ``cosine``:
        ``r + (1 - r) * (1 + cos(pi * p)) / 2`` with ``p = (done - W) / (T - W)`` clamped to
        1 (``r`` = ``lr_min_ratio``, ``T`` = ``total_steps``).
        """
        warmup = self.warmup_steps
        if done < warmup:
            return (done + 1) / warmup
        if self.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (done - warmup) / (self.total_steps - warmup))
        ratio = self.lr_min_ratio
        return ratio + (1.0 - ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def recorded(self) -> dict[str, Any]:
        """The settings a checkpoint records (a resumed run must keep them): the schedule's
        kind, warm-up and averaging, and for ``cosine`` its floor and length (``steps``)."""
        values: dict[str, Any] = {"lr_schedule": self.lr_schedule,
                                  "warmup_steps": self.warmup_steps,
                                  "ema_decay": self.ema_decay}
        if self.lr_schedule == "cosine":
            values.update(lr_min_ratio=self.lr_min_ratio, steps=self.total_steps)
        return values


class Distiller:
    """The student and its Adam optimiser; one ``step`` per batch of dreams.

    ``sync`` (several processes): the student trains in ``DistributedDataParallel``
    (gradients averaged over the ranks; every rank holds the same student).
    """

    def __init__(self, student: RestorationAdapter, lr: float, lambda_kd: float,
                 device: torch.device, precision: Precision,
                 sync: RankSync | None = None, *,
                 schedule: StudentSchedule | None = None,
                 lr_lambda: Callable[[int], float] | None = None,
                 features: FeatureDistillation | None = None) -> None:
        """``schedule``: the learning-rate schedule and weight averaging
        (:class:`StudentSchedule`; ``None``: constant ``lr``, no averaging, the method).
        ``lr_lambda``: instead of ``schedule``'s, any factor of ``lr`` per update taken
        (``LambdaLR``; not recorded in checkpoints, for experiments). The scheduler's
        position and the average are part of :meth:`state_dict`. ``features``: the feature
        term (:mod:`dreamprune_cli.engine.feature_distill`; ``None``: off, the method, and
        no hook is registered).

        Raises:
            ValueError: both ``lr_lambda`` and a ``schedule`` that schedules the rate.
        """
        self.schedule = schedule or StudentSchedule()
        if lr_lambda is not None and self.schedule.scheduled:
            raise ValueError("Distiller: pass lr_lambda or a StudentSchedule with a learning-"
                             "rate schedule, not both")
        self.student = student.to(device).eval()
        self.lambda_kd = lambda_kd
        self.features = features
        self.last_feature_loss: float | None = None
        """The feature term ``L_feat`` of the last step, unweighted (``None`` when off)."""
        self.device = device
        self.precision = precision
        parameters = list(student.parameters())
        for parameter in parameters:  # a copy of a frozen teacher arrives frozen
            parameter.requires_grad_(True)
        self.optimizer = torch.optim.Adam(parameters, lr=lr)
        self.scaler = make_scaler(device, precision)
        self.trained = self.student if sync is None else sync.wrap(self.student)
        if lr_lambda is None and self.schedule.scheduled:
            plan = self.schedule  # a plain function, which LambdaLR leaves out of its
            # state_dict (the settings rebuild it on resume; its position is saved)
            lr_lambda = lambda done: plan.lr_factor(done)  # noqa: E731
        self.scheduler = None if lr_lambda is None else LambdaLR(self.optimizer, lr_lambda)
        self.average: AveragedModel | None = None
        """The moving average of the student's network (``ema_decay > 0``): its parameters
        (for a masked layer the unmasked ``original`` tensor; the mask buffers are the
        student's, so pruned weights stay exactly zero) averaged after every update."""
        if self.schedule.ema_decay > 0:
            self.average = AveragedModel(
                self.student.network, multi_avg_fn=get_ema_multi_avg_fn(self.schedule.ema_decay),
                use_buffers=False)
            self.average.requires_grad_(False)

    def step(self, inputs: torch.Tensor, teacher_out: torch.Tensor,
             teacher_features: FeatureCalls | None = None) -> float:
        """One update on ``lambda_kd * || S(x) - T(x) ||_1`` (both inputs detached), plus
        ``lambda_feat * L_feat`` with the feature term.

        Args:
            inputs: ``(B, 3, H, W)`` student inputs.
            teacher_out: ``(B, 3, H, W)`` the teacher's outputs on them.
            teacher_features: with the feature term, the teacher's features from the forward
                that gave ``teacher_out`` (:meth:`FeatureDistillation.teacher_tap
                <dreamprune_cli.engine.feature_distill.FeatureDistillation.teacher_tap>`).

        Returns:
            The output term ``lambda_kd * L1`` (the history's ``kd``); the feature term, when
            on, is :attr:`last_feature_loss`.

        Raises:
            ValueError: the feature term is on and ``teacher_features`` is missing, or a
                paired feature map differs in shape.
        """
        features = self.features
        if features is not None and teacher_features is None:
            raise ValueError("Distiller.step: lambda_feat > 0 needs the teacher's features "
                             "of these inputs (FeatureDistillation.teacher_tap)")
        with autocast(self.device, self.precision):
            if features is None:
                student_out = self.trained(inputs.detach())
            else:  # hooks on the unwrapped student's modules (they fire under DDP too)
                with features.student_tap() as tap:
                    student_out = self.trained(inputs.detach())
        kd = self.lambda_kd * distill_loss(student_out.float(), teacher_out.detach())
        loss = kd
        if features is not None:
            assert teacher_features is not None
            feature = features.loss(tap.calls(), teacher_features)  # float32
            del tap  # the student's feature maps: only the graph keeps what backward needs
            loss = kd + features.lambda_feat * feature
            self.last_feature_loss = float(feature.detach())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        if self.average is not None:  # the unwrapped student: the same on every rank
            self.average.update_parameters(self.student.network)
        return float(kd.detach())

    @property
    def lr(self) -> float:
        """The learning rate of the next update."""
        return float(self.optimizer.param_groups[0]["lr"])

    def adopt_average(self) -> None:
        """Copy the averaged weights into the student (nothing without averaging): call
        once training is over, before saving or scoring the student; the raw weights (and
        any checkpoint of them) are no longer the student's afterwards."""
        if self.average is None or int(self.average.n_averaged) == 0:
            return
        with torch.no_grad():
            for mine, averaged in zip(self.student.network.parameters(),
                                      self.average.module.parameters(), strict=True):
                mine.copy_(averaged)
        log.info("the student takes the moving average of its weights (ema_decay %g, %d "
                 "updates)", self.schedule.ema_decay, int(self.average.n_averaged))

    def state_dict(self) -> dict[str, Any]:
        """The student's raw weights, the optimiser, the loss scaler, and the scheduler's
        position and the weight average (``None`` when there are none), on the CPU."""
        return {"student": {k: v.detach().cpu() for k, v in self.student.network.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
                "average": None if self.average is None else
                {k: v.detach().cpu() for k, v in self.average.state_dict().items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output (of a distiller with the same schedule;
        entries absent from earlier versions' checkpoints are left as built).

        Raises:
            UsageError: the state has a scheduler or an average this distiller has not, or
                lacks one it has (:meth:`JointTrainer.load
                <dreamprune_cli.engine.joint.JointTrainer.load>` names the setting first).
        """
        for key, mine in (("scheduler", self.scheduler), ("average", self.average)):
            if (state.get(key) is None) != (mine is None):
                raise UsageError(f"the checkpoint {'has' if mine is None else 'lacks'} the "
                                 f"student's {key} state: it was written with another "
                                 "learning-rate schedule or ema_decay")
        self.student.network.load_state_dict(state["student"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])


@dataclass
class DistillResult:
    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0


def distill_offline(distiller: Distiller, teacher: RestorationAdapter, dreams: torch.Tensor,
                    steps: int, batch_size: int, generator: torch.Generator,
                    progress: ProgressSink | None = None) -> DistillResult:
    """Distill on saved dreams: random minibatches, teacher outputs computed once.

    With the feature term (``distiller.features``) the teacher's features of every dream
    would have to be stored; instead the teacher runs once per step on the minibatch, which
    gives both its outputs and its features (the same targets, one teacher forward a step).
    The history then has ``feat`` (``L_feat``, unweighted) besides ``kd``.
    """
    progress = progress or NullProgress()
    device = distiller.device
    features = distiller.features
    targets = None
    if features is None:
        with torch.inference_mode():
            targets = torch.cat([teacher(dreams[i:i + 16].to(device)).float().cpu()
                                 for i in range(0, dreams.shape[0], 16)])
    history: list[dict[str, float]] = []
    progress.start("distill", steps)
    for step in range(1, steps + 1):
        index = torch.randint(0, dreams.shape[0], (min(batch_size, dreams.shape[0]),),
                              generator=generator)
        batch = dreams[index].to(device)
        if features is None:
            assert targets is not None
            loss = distiller.step(batch, targets[index].to(device))
            check_finite(step, distill=loss)
            history.append({"step": step, "kd": loss})
            progress.update(step, kd=loss)
            continue
        with torch.no_grad(), features.teacher_tap() as tap:
            target = teacher(batch).float()
        loss = distiller.step(batch, target, tap.calls())
        feat = distiller.last_feature_loss
        assert feat is not None
        check_finite(step, distill=loss, feat=feat)
        history.append({"step": step, "kd": loss, "feat": feat})
        progress.update(step, kd=loss, feat=feat)
    progress.finish()
    return DistillResult(history=history, steps=steps)
