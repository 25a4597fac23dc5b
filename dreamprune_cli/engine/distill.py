"""Distillation of a masked student onto the teacher's outputs.

The student trains in eval mode (normalisation layers keep the teacher's statistics; the
dreams are not the teacher's data) and its pruning masks are parametrizations, so pruned
weights stay exactly zero however long it trains.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from dreamprune_cli.engine.distributed import RankSync
from dreamprune_cli.engine.runtime import autocast, make_scaler, Precision
from dreamprune_cli.engine.dream import check_finite
from dreamprune_cli.engine.losses import distill_loss
from dreamprune_cli.models.adapter import RestorationAdapter
from dreamprune_cli.progress import NullProgress, ProgressSink

log = logging.getLogger(__name__)


class Distiller:
    """The student and its Adam optimiser; one ``step`` per batch of dreams.

    ``sync`` (several processes): the student trains in ``DistributedDataParallel``
    (gradients averaged over the ranks; every rank holds the same student).
    """

    def __init__(self, student: RestorationAdapter, lr: float, lambda_kd: float,
                 device: torch.device, precision: Precision,
                 sync: RankSync | None = None, *,
                 lr_lambda: Callable[[int], float] | None = None) -> None:
        """``lr_lambda``: a factor of ``lr`` per step taken (``LambdaLR``; e.g. a cosine
        decay), stepped after every update; ``None`` keeps ``lr`` constant (the method). Its
        position is not part of :meth:`state_dict`."""
        self.student = student.to(device).eval()
        self.lambda_kd = lambda_kd
        self.device = device
        self.precision = precision
        parameters = list(student.parameters())
        for parameter in parameters:  # a copy of a frozen teacher arrives frozen
            parameter.requires_grad_(True)
        self.optimizer = torch.optim.Adam(parameters, lr=lr)
        self.scaler = make_scaler(device, precision)
        self.trained = self.student if sync is None else sync.wrap(self.student)
        self.scheduler = None if lr_lambda is None else \
            torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda)

    def step(self, inputs: torch.Tensor, teacher_out: torch.Tensor) -> float:
        """One update on ``lambda_kd * || S(x) - T(x) ||_1`` (both inputs detached)."""
        with autocast(self.device, self.precision):
            student_out = self.trained(inputs.detach())
        loss = self.lambda_kd * distill_loss(student_out.float(), teacher_out.detach())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        return float(loss.detach())

    def state_dict(self) -> dict[str, Any]:
        return {"student": {k: v.detach().cpu() for k, v in self.student.network.state_dict().items()},
                "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.student.network.load_state_dict(state["student"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])


@dataclass
class DistillResult:
    history: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0


def distill_offline(distiller: Distiller, teacher: RestorationAdapter, dreams: torch.Tensor,
                    steps: int, batch_size: int, generator: torch.Generator,
                    progress: ProgressSink | None = None) -> DistillResult:
    """Distill on saved dreams: random minibatches, teacher outputs computed once."""
    progress = progress or NullProgress()
    device = distiller.device
    with torch.inference_mode():
        targets = torch.cat([teacher(dreams[i:i + 16].to(device)).float().cpu()
                             for i in range(0, dreams.shape[0], 16)])
    history: list[dict[str, float]] = []
    progress.start("distill", steps)
    for step in range(1, steps + 1):
        index = torch.randint(0, dreams.shape[0], (min(batch_size, dreams.shape[0]),),
                              generator=generator)
        loss = distiller.step(dreams[index].to(device), targets[index].to(device))
        check_finite(step, distill=loss)
        history.append({"step": step, "kd": loss})
        progress.update(step, kd=loss)
    progress.finish()
    return DistillResult(history=history, steps=steps)
