"""Distillation of a masked student onto the teacher's outputs.

The student trains in eval mode (normalisation layers keep the teacher's statistics; the
dreams are not the teacher's data) and its pruning masks are parametrizations, so pruned
weights stay exactly zero however long it trains.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dreamprune_cli.engine.device import Precision
from dreamprune_cli.engine.distributed import RankSync
from dreamprune_cli.engine.dream import check_finite
from dreamprune_cli.engine.losses import distill_loss
from dreamprune_cli.engine.precision import autocast, make_scaler
from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.adapter import RestorationAdapter
from dreamprune_cli.fileio import atomic_write
from dreamprune_cli.models.checkpoint import read_model_name, save_safetensors
from dreamprune_cli.models.loading import LoadedModel, load_model
from dreamprune_cli.progress import NullProgress, ProgressSink
from dreamprune_cli.prune.masks import (PRUNABLE_MODULES, attach_masks, get_masks,
                                        plain_state_dict, set_masks)
from dreamprune_cli.prune.resize import architecture_metadata

log = logging.getLogger(__name__)


def load_student(student_path: str | Path, model: str | None = None,
                 trust: bool = False) -> LoadedModel:
    """Load a pruned student and re-attach its masks.

    Masks come from ``masks.safetensors`` beside the student when present (written by
    ``prune``), else from the student's exact zeros (every zero weight stays pruned). A
    channel-pruned student (thinner layers) gets no masks.

    Raises:
        UsageError: the file names another model than ``model``, or does not fit it.
    """
    student_path = Path(student_path)
    named = read_model_name(student_path)
    if model is not None and named is not None and named != model:
        raise UsageError(f"--student {student_path}: a pruned {named!r}, but the teacher is "
                         f"{model!r} (the student must be a pruned copy of the teacher)")
    loaded = load_model(model, weights=student_path, trust=trust)
    modules = dict(loaded.network.named_modules())
    masks_path = student_path.parent / "masks.safetensors"
    if loaded.granularity == "channel":  # thinner layers: every weight is trainable
        return loaded
    if masks_path.is_file():
        masks = {k: v.bool() for k, v in load_file(str(masks_path)).items()}
        unknown = sorted(set(masks) - set(modules))
        if unknown:
            raise UsageError(f"{masks_path}: masks for layers the model does not have: "
                             f"{', '.join(unknown[:10])}")
    else:
        masks = {name: module.weight.detach() != 0 for name, module in modules.items()
                 if isinstance(module, PRUNABLE_MODULES) and name
                 and bool((module.weight == 0).any())}
        log.info("no masks.safetensors beside %s: masking its %d layers with zeros",
                 student_path, len(masks))
    attach_masks(loaded.network, masks)
    set_masks(loaded.network, masks)
    return loaded


def save_student(student: LoadedModel, out_dir: Path, extra: dict[str, str] | None = None,
                 overwrite: bool = True) -> Path:
    """Write ``student.safetensors`` (original architecture, pruned weights exactly zero,
    loadable strict with ``--weights``) and ``masks.safetensors`` into ``out_dir``; a
    channel-pruned student: its thinner tensors, marked in the metadata, and no masks."""
    state = plain_state_dict(student.network)
    extra = {**architecture_metadata(state, student.info.factory, student.config),
             **(extra or {})}
    path = save_safetensors(out_dir / "student.safetensors", state, student.name,
                            student.config, extra=extra, overwrite=overwrite)
    if student.granularity == "channel":  # thinner layers, nothing masked
        return path
    masks = {k: v.to(torch.uint8) for k, v in get_masks(student.network).items()}
    atomic_write(out_dir / "masks.safetensors", lambda tmp: save_file(masks, str(tmp)),
                 overwrite=overwrite)
    return path


class Distiller:
    """The student and its Adam optimiser; one ``step`` per batch of dreams.

    ``sync`` (several processes): the student trains in ``DistributedDataParallel``
    (gradients averaged over the ranks; every rank holds the same student).
    """

    def __init__(self, student: RestorationAdapter, lr: float, lambda_kd: float,
                 device: torch.device, precision: Precision,
                 sync: RankSync | None = None) -> None:
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

    def step(self, inputs: torch.Tensor, teacher_out: torch.Tensor) -> float:
        """One update on ``lambda_kd * || S(x) - T(x) ||_1`` (both inputs detached)."""
        with autocast(self.device, self.precision):
            student_out = self.trained(inputs.detach())
        loss = self.lambda_kd * distill_loss(student_out.float(), teacher_out.detach())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
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
