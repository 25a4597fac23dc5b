"""What pruning returns at every granularity, and the files written for it.

:class:`PruneResult` is the one result type of the planners (unstructured
:func:`~dreamprune_cli.prune.unstructured.plan.prune_model`, channel
:func:`~dreamprune_cli.prune.channel.plan.prune_channels`, depth
:func:`~dreamprune_cli.prune.depth.plan.prune_depth` and ``prune_depth_channel``);
:func:`write_prune_outputs` writes any of them (student, masks where there are masks,
``report.json``) through :mod:`dreamprune_cli.prune.student`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from dreamprune_cli.fileio import ensure_output_dir, write_json_atomic
from dreamprune_cli.flops import CostReport
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.prune.student import write_student

REPORT_FILE = "report.json"


class Measured(Protocol):
    """Measurements a result carries beside its details (drift curves): a JSON view."""

    def as_dict(self) -> dict[str, object]: ...


@dataclass
class LayerReport:
    """Cost of one Conv2d/ConvTranspose2d/Linear layer before and after pruning."""

    name: str
    kind: str
    shape: list[int]
    pruned: bool  # whether the allocator could thin it out (False: excluded, kept dense)
    params: int  # weight elements
    params_kept: int  # non-zero weight elements after pruning
    macs_dense: int  # the counter's MACs of the layer, bias included
    macs_kept: int
    positions: int  # MACs per non-zero weight (output pixels of a conv, summed over calls)

    @property
    def keep_ratio(self) -> float:
        return self.params_kept / self.params if self.params else 1.0

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "kind": self.kind, "shape": self.shape,
                "pruned": self.pruned, "params": self.params, "params_kept": self.params_kept,
                "keep_ratio": self.keep_ratio, "macs_dense": self.macs_dense,
                "macs_kept": self.macs_kept, "positions": self.positions,
                "weight_macs_dense": self.params * self.positions,
                "weight_macs_kept": self.params_kept * self.positions}


@dataclass
class PruneResult:
    """The student of any granularity and what pruning did to each layer.

    ``student`` is a masked copy of the teacher (unstructured) or a smaller network
    (``granularity`` channel, depth, depth+channel); ``scalar`` is the planner's own knob
    (``scalar_name``); ``details`` what the planner measured, written to ``report.json``.
    """

    student: LoadedModel
    allocator: str
    flops_target: float
    flops_size: int
    scalar_name: str
    scalar: float
    macs_dense: int
    macs_before: int
    macs_after: int
    params_dense: int
    params_before: int
    params_after: int
    layers: list[LayerReport]
    exclude: list[str]
    seconds: float
    drift: Measured | None = None  # the adaptive allocator's curves (unstructured)
    details: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    """Keys the granularity adds to the student file (``dreamprune.prune.channel_multiple``)."""

    @property
    def granularity(self) -> str:
        """The student's granularity (``unstructured``, ``channel``, ``depth``,
        ``depth+channel``): read from the student, the one place it is stored."""
        return self.student.granularity

    @property
    def macs_ratio(self) -> float:
        """Kept MACs over the dense MACs at ``3 x flops_size x flops_size``."""
        return self.macs_after / self.macs_dense

    def as_dict(self, layers: bool = True) -> dict[str, object]:
        data: dict[str, object] = {
            "model": self.student.name, "config": self.student.config,
            "weights": self.student.weights, "granularity": self.granularity,
            "allocator": self.allocator,
            "flops_target": self.flops_target, "flops_size": self.flops_size,
            "input_size": [3, self.flops_size, self.flops_size],
            "scalar": {"name": self.scalar_name, "value": self.scalar},
            "macs_dense": self.macs_dense, "macs_before": self.macs_before,
            "macs_after": self.macs_after, "macs_ratio": self.macs_ratio,
            "params_dense": self.params_dense, "params_before": self.params_before,
            "params_after": self.params_after,
            "pruned_layers": sum(layer.pruned for layer in self.layers),
            "excluded_layers": [layer.name for layer in self.layers if not layer.pruned],
            "exclude": self.exclude, "seconds": self.seconds, "details": self.details,
        }
        if layers:
            data["layers"] = [layer.as_dict() for layer in self.layers]
            if self.drift is not None:
                data["drift"] = self.drift.as_dict()
        return data


def _positions(module: torch.nn.Module, macs_dense: int) -> int:
    """MACs per weight element of a dense layer (output pixels of a convolution)."""
    numel = module.weight.numel()
    if isinstance(module, torch.nn.modules.conv._ConvNd) and not module.transposed:
        per_pixel = numel + (module.out_channels if module.bias is not None else 0)
        return macs_dense // per_pixel if per_pixel else 0
    if isinstance(module, torch.nn.Linear):
        per_row = numel + (module.out_features if module.bias is not None else 0)
        return macs_dense // per_row if per_row else 0
    return macs_dense // numel if numel else 0


def structured_layers(teacher: torch.nn.Module, student: torch.nn.Module,
                      before: CostReport, after: CostReport) -> list[LayerReport]:
    """One report per convolution/linear layer the teacher calls, for a student with
    thinner layers (channel pruning) or fewer of them (depth pruning).

    ``before``/``after``: the counter's reports of teacher and student at the same size. A
    layer the student no longer has (inside a removed block) or no longer calls keeps 0
    weights and 0 MACs; a layer run fewer times (fewer stages) keeps its weights and fewer
    MACs. ``pruned`` says whether anything of the layer was removed.
    """
    student_modules = dict(student.named_modules())
    student_costs = {cost.name: cost for cost in after.layers}
    layers = []
    for cost in before.layers:
        module = teacher.get_submodule(cost.name)
        if not isinstance(module, (torch.nn.modules.conv._ConvNd, torch.nn.Linear)) \
                or cost.calls == 0:
            continue
        kept = student_costs.get(cost.name)
        thinner = student_modules.get(cost.name)
        params_kept = thinner.weight.numel() if thinner is not None and kept is not None \
            and kept.calls else 0
        macs_kept = kept.macs if kept is not None else 0
        layers.append(LayerReport(
            name=cost.name, kind=type(module).__name__,
            shape=list(thinner.weight.shape) if params_kept else [],
            pruned=params_kept != module.weight.numel() or macs_kept != cost.macs_dense,
            params=module.weight.numel(), params_kept=params_kept,
            macs_dense=cost.macs_dense, macs_kept=macs_kept,
            positions=_positions(module, cost.macs_dense)))
    return layers


CHANNEL_MULTIPLE_KEY = "dreamprune.prune.channel_multiple"
"""Student-file metadata key: the channel multiple a structured plan with channel cuts kept."""


def channel_multiple_metadata(channel_multiple: int) -> dict[str, str]:
    """``{CHANNEL_MULTIPLE_KEY: "8"}``: the metadata of a plan that cut channels."""
    return {CHANNEL_MULTIPLE_KEY: str(channel_multiple)}


def write_prune_outputs(result: PruneResult, out_dir: Path,
                        overwrite: bool = False) -> dict[str, Path]:
    """Write ``student.safetensors``, ``masks.safetensors`` and ``report.json`` into ``out_dir``.

    Every file is written atomically. ``out_dir`` must be empty or absent unless
    ``overwrite``. The student and mask files are written by
    :func:`dreamprune_cli.prune.student.write_student` (``dreamprune evaluate --weights
    DIR/student.safetensors`` loads the student alone); a structured student has thinner or
    fewer tensors, metadata saying so and no masks file. The metadata is the keys every
    granularity writes plus the result's own (:attr:`PruneResult.metadata`).
    """
    out_dir = ensure_output_dir(Path(out_dir), overwrite)
    extra = {
        "dreamprune.prune.allocator": result.allocator,
        "dreamprune.prune.flops_target": repr(result.flops_target),
        "dreamprune.prune.flops_size": str(result.flops_size),
        "dreamprune.prune.macs_ratio": repr(result.macs_ratio),
        "dreamprune.prune.exclude": json.dumps(result.exclude),
        **result.metadata,
    }
    paths = write_student(result.student, out_dir, extra, overwrite=overwrite)
    paths["report"] = out_dir / REPORT_FILE
    write_json_atomic(paths["report"], {**result.as_dict(),
                                        "files": {k: p.name for k, p in paths.items()}},
                      overwrite=overwrite)
    return paths
