"""``evaluate``: score a model on degraded/clean pairs, PSNR and SSIM as the field reports them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli.engine.evaluate import EvaluationResult, evaluate_pairs
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.report import ResultTable
from dreamprune_cli.runkit.context import evaluation_pairs, load_teacher, runtime
from dreamprune_cli.settings import ResolvedSettings

log = logging.getLogger(__name__)


@dataclass
class EvaluateRun:
    """A scored model: the evaluation and where its pairs came from."""

    model: str
    weights: Path | None
    device: torch.device
    result: EvaluationResult
    pairing: str
    input_dir: Path
    target_dir: Path
    out_dir: Path | None  # where restored PNGs were written (``save_dir``), if anywhere

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object."""
        return {"model": self.model, "weights": self.weights, "device": str(self.device),
                **self.result.as_dict(), "pairing": self.pairing, "input_dir": self.input_dir,
                "target_dir": self.target_dir, "save_dir": self.out_dir}

    def tables(self) -> list[ResultTable]:
        r = self.result
        space = r.metric_space.upper() if r.metric_space == "y" else "RGB"
        tiles = f", tiles {r.tile}+{r.tile_overlap}" if r.tile else ""
        return [ResultTable(
            f"evaluate {self.model} ({space}, crop {r.crop_border}, SSIM {r.ssim_variant}, "
            f"{r.quantization}{tiles})",
            ["count", "PSNR", "SSIM", "GMACs/img", "GMACs@256", "params", "seconds"],
            [[r.count, r.psnr, r.ssim, r.macs / 1e9, r.macs_256 / 1e9, r.params, r.seconds]])]


def run(resolved: ResolvedSettings, progress: ProgressSink | None = None) -> EvaluateRun:
    """Load the model, pair and check the images, restore and score them (under torchrun,
    each process its round-robin share, the scores gathered on every rank).

    Raises:
        UsageError: bad settings, weights or images (before any work).
    """
    s = resolved.settings
    common, ev = s.common, s.evaluate
    device, _precision, sync = runtime(common, join=True)
    loaded = load_teacher(common)
    pairs, protocol = evaluation_pairs(loaded, resolved, ev.input_dir, ev.target_dir,
                                       ("input_dir", "target_dir"), limit=ev.limit)
    result = evaluate_pairs(loaded.adapter(), pairs, device=device, save_dir=common.save_dir,
                            overwrite=common.overwrite, progress=progress, **protocol,
                            sync=sync)
    if common.save_dir is not None:
        log.info("wrote %d restored images to %s", result.count, common.save_dir)
    return EvaluateRun(model=loaded.name, weights=loaded.weights, device=device, result=result,
                       pairing=ev.pairing, input_dir=pairs[0].input_path.parent,
                       target_dir=pairs[0].target_path.parent, out_dir=common.save_dir)
