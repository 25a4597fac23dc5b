"""``export``: convert any accepted checkpoint to safetensors carrying the model name and
config, or to ONNX for deployment (the destination's suffix says which)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.loading import save_model
from dreamprune_cli.models.onnx_export import check_onnx_packages, export_onnx
from dreamprune_cli.report import ResultTable
from dreamprune_cli.runkit.context import load_teacher
from dreamprune_cli.settings import ResolvedSettings


@dataclass
class ExportRun:
    model: str
    config: dict[str, Any]
    weights: Path | None
    out_path: Path
    tensors: int
    format: str = "safetensors"
    onnx: dict[str, Any] | None = None  # opset, shapes, ONNX Runtime's difference

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "config": self.config, "weights": self.weights,
                "output": self.out_path, "tensors": self.tensors, "format": self.format,
                **({"onnx": self.onnx} if self.onnx is not None else {})}

    def tables(self) -> list[ResultTable]:
        if self.onnx is None:
            return [ResultTable("export", ["model", "tensors", "output"],
                                [[self.model, self.tensors, self.out_path]])]
        diff = self.onnx["max_abs_diff"]
        return [ResultTable("export (ONNX)", ["model", "input", "opset", "ONNX Runtime vs "
                                              "PyTorch (max abs)", "output"],
                            [[self.model, self.onnx["input"], self.onnx["opset"],
                              "not checked (no onnxruntime)" if diff is None else diff,
                              self.out_path]])]


FORMATS = {".safetensors": "safetensors", ".onnx": "onnx"}


def check_destination(out: Path) -> str:
    """The format the destination's suffix names, checked before any work (ONNX: its
    packages too).

    Raises:
        UsageError: another suffix, or a package the ONNX exporter needs is missing.
    """
    if out.suffix not in FORMATS:
        raise UsageError(f"$out {out}: expected a .safetensors or .onnx file name")
    if FORMATS[out.suffix] == "onnx":
        check_onnx_packages()
    return FORMATS[out.suffix]


def run(resolved: ResolvedSettings, out: Path, onnx_size: int | None = None) -> ExportRun:
    """Load the model the settings name and write it to ``out`` (``.safetensors`` or
    ``.onnx``; ``onnx_size`` fixes the ONNX input to ``1 x 3 x S x S``, default dynamic).

    Raises:
        UsageError: ``out`` of another suffix or existing without ``overwrite``; unreadable
            weights; a missing ONNX package or a model the ONNX exporter cannot convert.
        RuntimeFailure: the ONNX file's output differs from PyTorch's (nothing written).
    """
    kind = check_destination(out)
    common = resolved.settings.common
    if out.exists() and not common.overwrite:  # before loading anything
        raise UsageError(f"$out {out}: already exists; pass $overwrite to replace it")
    loaded = load_teacher(common)
    tensors = len(loaded.network.state_dict())
    if kind == "onnx":
        done = export_onnx(loaded, out, size=onnx_size, overwrite=common.overwrite)
        details = {"opset": done.opset, "dynamic": done.dynamic,
                   "input": "N x 3 x H x W" if done.dynamic
                   else "x".join(map(str, done.input_shape)),
                   "max_abs_diff": done.max_abs_diff,
                   "verified_shapes": [list(s) for s in done.verified_shapes]}
        return ExportRun(model=loaded.name, config=loaded.config, weights=common.weights,
                         out_path=done.path, tensors=tensors, format="onnx", onnx=details)
    path = save_model(loaded, out, overwrite=common.overwrite)
    return ExportRun(model=loaded.name, config=loaded.config, weights=common.weights,
                     out_path=path, tensors=tensors)
