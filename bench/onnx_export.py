"""ONNX export of every architecture in the zoo: does it convert, and does ONNX Runtime match?

For each registered model's tiny variant (random weights, seeded): the dense model, and
optionally its channel student (``--channel``: uniform allocator, F = 0.6, MACs at 32 px) and
its unstructured student (``--unstructured``: uniform magnitude masks, F = 0.6), exported
with :func:`dreamprune_cli.models.onnx_export.export_onnx` (PyTorch's default exporter,
``dynamo=True``) and run with ONNX Runtime on the exporter's test inputs; the table gives
the max abs difference to PyTorch, or the one-line reason the export failed.

Results: ``bench/results/onnx_export.json`` and the ``onnx_export`` section of
``docs/RESULTS.md``.

Usage::

    python bench/onnx_export.py                       # every model, dynamic shapes
    python bench/onnx_export.py --size 48 --channel ffa hinet --unstructured ffa
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli.errors import DreampruneError
from dreamprune_cli.models.loading import LoadedModel, load_model
from dreamprune_cli.models.onnx_export import export_onnx
from dreamprune_cli.models.registry import list_models
from dreamprune_cli.prune.channel.plan import prune_channels
from dreamprune_cli.prune.unstructured.plan import prune_model

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchkit beside it
from benchkit import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS_JSON = ROOT / "bench" / "results" / "onnx_export.json"
RESULTS_MD = ROOT / "docs" / "RESULTS.md"
START, END = "<!-- onnx_export:start -->", "<!-- onnx_export:end -->"


def export_row(loaded: LoadedModel, kind: str, size: int | None) -> dict[str, Any]:
    """Export ``loaded`` to a temporary file; the row says what happened."""
    tick = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = export_onnx(loaded, Path(tmp) / "model.onnx", size=size)
        except DreampruneError as exc:
            return {"model": loaded.name, "kind": kind, "ok": False, "error": str(exc),
                    "seconds": time.perf_counter() - tick}
        return {"model": loaded.name, "kind": kind, "ok": True,
                "max_abs_diff": done.max_abs_diff, "shapes": done.verified_shapes,
                "opset": done.opset, "bytes": done.path.stat().st_size,
                "seconds": time.perf_counter() - tick}


def markdown(data: dict[str, Any]) -> str:
    lines = [START, "## ONNX export of the zoo (tiny variants)", "",
             f"Command: `{data['command']}`  ",
             f"Machine: {data['machine']}; exporter: torch.onnx.export (dynamo=True), onnx "
             f"{data['versions']['onnx']}, onnxscript {data['versions']['onnxscript']}, "
             f"onnxruntime {data['versions']['onnxruntime']}. Shapes: "
             f"{'dynamic batch, height, width' if data['size'] is None else 'static'}; "
             "max abs difference between ONNX Runtime and PyTorch over the shapes listed.", "",
             "| model | kind | result | max abs diff | shapes checked | s |",
             "|---|---|---|---|---|---|"]
    for row in data["rows"]:
        if row["ok"]:
            shapes = ", ".join("x".join(map(str, s)) for s in row["shapes"])
            lines.append(f"| {row['model']} | {row['kind']} | exported (opset {row['opset']}) "
                         f"| {row['max_abs_diff']:.1e} | {shapes} | {row['seconds']:.0f} |")
        else:
            lines.append(f"| {row['model']} | {row['kind']} | **fails**: {row['error']} | "
                         f"| | {row['seconds']:.0f} |")
    lines.append(END)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None,
                        help="models (default: every registered one but identity)")
    parser.add_argument("--size", type=int, default=None,
                        help="static 1x3xSxS export (default: dynamic shapes)")
    parser.add_argument("--channel", nargs="*", default=None, metavar="MODEL",
                        help="channel students too (of these models; none named: of all)")
    parser.add_argument("--unstructured", nargs="*", default=None, metavar="MODEL",
                        help="unstructured students too (of these models; none named: all)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import onnx
    import onnxruntime
    import onnxscript

    names = args.models or [n for n in list_models() if n != "identity"]

    def wanted(option: list[str] | None, name: str) -> bool:
        return option is not None and (not option or name in option)

    rows = []
    for name in names:
        torch.manual_seed(0)
        loaded = load_model(name, "tiny", use_bundled=False)
        students = [("dense", loaded)]
        if wanted(args.unstructured, name):
            students.append(("unstructured 0.6", prune_model(loaded, 0.6, "uniform",
                                                             flops_size=32).student))
        if wanted(args.channel, name):
            try:
                students.append(("channel 0.6", prune_channels(loaded, 0.6, "uniform",
                                                               flops_size=32).student))
            except DreampruneError as exc:
                rows.append({"model": name, "kind": "channel 0.6", "ok": False,
                             "error": f"not channel-prunable here: {exc}", "seconds": 0.0})
        for kind, model in students:
            row = export_row(model, kind, args.size)
            rows.append(row)
            print(json.dumps(row), flush=True)
    command = " ".join(["python bench/onnx_export.py", shlex.join(sys.argv[1:])]).strip()
    data = {"command": command, "machine": f"{platform.machine()}, torch {torch.__version__}",
            "size": args.size, "versions": {"onnx": onnx.__version__,
                                            "onnxscript": onnxscript.__version__,
                                            "onnxruntime": onnxruntime.__version__},
            "rows": rows}
    section = markdown(data)
    print(section)
    if args.no_write:
        return
    RESULTS_JSON.write_text(json.dumps(data, indent=2) + "\n")
    write_section(section, RESULTS_MD, START, END)


if __name__ == "__main__":
    main()
