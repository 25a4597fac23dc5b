"""ONNX export of a loaded model (teacher, unstructured or channel student) for deployment.

What is exported is the model as every subcommand calls it (the restoration adapter): RGB
``(N, 3, H, W)`` float32 in [0, 1] in, the restored RGB image out (not clamped), with the
model's padding to its size multiple, channel order, normalisation and output selection
inside the graph. By default batch, height and width are dynamic; ``size`` fixes the input
to ``1 x 3 x size x size`` (faster to export, for runtimes that want static shapes).

The exporter is PyTorch's default one (``torch.onnx.export(..., dynamo=True)``: the model is
captured with ``torch.export`` and translated by ONNX Script), which needs the ``onnx`` and
``onnxscript`` packages (the ``[onnx]`` extra). When ``onnxruntime`` is installed too, the
exported file is run on test images before it is written and must match PyTorch.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from dreamprune_cli.errors import RuntimeFailure, UsageError
from dreamprune_cli.fileio import atomic_write
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.models.resize import GRANULARITY_KEY

log = logging.getLogger(__name__)

REQUIRED_PACKAGES = ("onnx", "onnxscript")
"""Packages ``torch.onnx.export`` needs (installed by ``pip install 'dreamprune[onnx]'``)."""

VERIFY_TOLERANCE = 1e-4
"""Largest max-abs difference between ONNX Runtime's and PyTorch's outputs that is accepted
(float32 operators reordered by the exporter's optimiser differ by ~1e-6)."""

INPUT_NAME, OUTPUT_NAME = "input", "output"


def check_onnx_packages(packages: tuple[str, ...] = REQUIRED_PACKAGES) -> None:
    """Raise before any work when a package the exporter needs is missing.

    Raises:
        UsageError: naming the missing package and the extra that installs it.
    """
    for package in packages:
        if importlib.util.find_spec(package) is None:
            raise UsageError(f"exporting to ONNX needs the '{package}' package: "
                             "pip install 'dreamprune[onnx]'")


def onnxruntime_available() -> bool:
    """Whether ``onnxruntime`` is installed (used to verify the exported file)."""
    return importlib.util.find_spec("onnxruntime") is not None


@dataclass
class OnnxExport:
    """What was exported.

    Attributes:
        path: the ``.onnx`` file.
        opset: the ONNX opset of the default domain.
        dynamic: whether batch, height and width are dynamic.
        input_shape: the example input's shape (the fixed shape when not dynamic).
        max_abs_diff: largest difference between ONNX Runtime and PyTorch over the test
            inputs; ``None`` when ``onnxruntime`` is not installed.
        verified_shapes: the input shapes compared.
    """

    path: Path
    opset: int
    dynamic: bool
    input_shape: tuple[int, ...]
    max_abs_diff: float | None
    verified_shapes: list[tuple[int, ...]]


def failure_reason(exc: BaseException) -> str:
    """One line saying why ``torch.onnx.export`` failed: the operator it could not
    convert when it names one, else the first line of its exception summary."""
    text = str(exc)
    operator = re.search(r"target=torch\.ops\.([\w.]+)", text) \
        or re.search(r"OpOverload\(op='([\w.]+)'", text)
    if operator:
        return f"the operator {operator.group(1)} has no ONNX conversion"
    if "## Exception summary" in text:
        for line in text.split("## Exception summary", 1)[1].splitlines():
            line = re.sub(r"^<class '[\w.]+'>: ", "", line.strip())
            if line and not line.startswith("⬆"):
                return line
    return next((line.strip() for line in text.splitlines() if line.strip()),
                type(exc).__name__)


def _export(module: torch.nn.Module, example: torch.Tensor, dynamic: bool) -> object:
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC,
            3: torch.export.Dim.DYNAMIC}
    chatter = io.StringIO()  # the exporter prints its progress on stdout
    with warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
        warnings.simplefilter("ignore")
        return torch.onnx.export(module, (example,), input_names=[INPUT_NAME],
                                 output_names=[OUTPUT_NAME], dynamo=True,
                                 dynamic_shapes=(dims,) if dynamic else None)


def _verify(path: Path, module: torch.nn.Module,
            shapes: list[tuple[int, ...]]) -> float:
    import numpy as np
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    session = onnxruntime.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in shapes:
        x = torch.rand(*shape, generator=generator)
        with torch.no_grad():
            expected = module(x).numpy()
        (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
        if got.shape != expected.shape:
            raise RuntimeFailure(f"the ONNX model returns {got.shape} for an input of "
                                 f"{shape}, PyTorch {expected.shape}")
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def export_onnx(loaded: LoadedModel, out: Path, size: int | None = None,
                overwrite: bool = False, verify: bool = True) -> OnnxExport:
    """Write ``loaded`` (as RGB in, RGB out) to the ONNX file ``out``, atomically.

    Args:
        loaded: the model; channel students export their thinner layers, unstructured ones
            their zeros (ONNX has no sparse convolution: same size and speed as the teacher).
        out: destination ``.onnx`` path; refused when it exists unless ``overwrite``.
        size: fix the input to ``(1, 3, size, size)``; ``None``: dynamic batch, height and
            width (traced at about 64 px).
        verify: run the file with ONNX Runtime (when installed) on inputs of two shapes
            (one when static) and compare with PyTorch before writing it.

    Returns:
        An :class:`OnnxExport`; the file's metadata names the model, its config and its
        granularity (``dreamprune.*`` keys), as the safetensors exports do.

    Raises:
        UsageError: a missing package, an existing file, a size that is not a multiple of the
            model's ``size_multiple``, or a model the exporter cannot convert (naming the
            operator when it names one).
        RuntimeFailure: ONNX Runtime's output differs from PyTorch's by more than
            :data:`VERIFY_TOLERANCE` (nothing is written).
    """
    check_onnx_packages()
    multiple = loaded.info.size_multiple
    if size is not None and (size < 1 or size % multiple):
        raise UsageError(f"--onnx-size {size}: expected a positive multiple of {multiple} "
                         f"for {loaded.name}")
    if out.exists() and not overwrite:
        raise UsageError(f"$out {out}: already exists; pass $overwrite to replace it")
    module = loaded.adapter().eval().cpu()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    dynamic = size is None
    side = size or max(64, -(-64 // multiple) * multiple)
    # dynamic: sides that are not multiples of size_multiple, so that the traced graph holds
    # the adapter's padding (of zero pixels for a side that is a multiple)
    height, width = (side, side) if not dynamic or multiple == 1 else (side + 1, side + 3)
    example = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
    try:
        program = _export(module, example, dynamic)
    except Exception as exc:  # the exporter raises many kinds; each one is a model it refuses
        raise UsageError(f"{loaded.name} cannot be exported to ONNX: {failure_reason(exc)}"
                         f" (torch {torch.__version__}); $out .safetensors works for every "
                         "model") from exc
    model = program.model  # type: ignore[attr-defined]
    model.metadata_props.update({
        "dreamprune.model": loaded.name,
        "dreamprune.config": json.dumps(loaded.config, sort_keys=True, default=str),
        GRANULARITY_KEY: loaded.granularity,
        "dreamprune.input": "RGB float32 (N, 3, H, W) in [0, 1]",
    })
    opset = int(model.opset_imports.get("", 0))
    shapes = [tuple(example.shape)]
    if dynamic:  # another batch and size (a multiple when the example's sides are not)
        shapes.append((2, 3, side, side + 7 if multiple == 1 else side))
    worst: float | None = None

    def write(tmp: Path) -> None:
        nonlocal worst
        program.save(str(tmp), external_data=False)  # type: ignore[attr-defined]
        if verify and onnxruntime_available():
            worst = _verify(tmp, module, shapes)
            if worst > VERIFY_TOLERANCE:
                raise RuntimeFailure(f"the ONNX export of {loaded.name} differs from PyTorch "
                                     f"by {worst:.3g} (max abs) on inputs {shapes}; not "
                                     f"written to {out}")

    atomic_write(out, write, overwrite=overwrite)
    if worst is None:
        log.info("onnxruntime is not installed: %s was not checked against PyTorch", out)
    else:
        log.info("%s: ONNX Runtime matches PyTorch within %.2g on %s", out, worst, shapes)
    return OnnxExport(path=out, opset=opset, dynamic=dynamic, input_shape=tuple(example.shape),
                      max_abs_diff=worst, verified_shapes=shapes if worst is not None else [])
