"""Scoring a model on pairs of degraded and clean images."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dreamprune_cli.data.images import write_png
from dreamprune_cli.data.pairs import ImagePair, read_pair
from dreamprune_cli.engine.distributed import RankSync, gather_scores, shard
from dreamprune_cli.finite import describe_nonfinite
from dreamprune_cli.engine.tiling import Tiling, restore_tiled
from dreamprune_cli.errors import RuntimeFailure
from dreamprune_cli.fileio import check_writable
from dreamprune_cli.flops import count_costs
from dreamprune_cli.metrics import (MetricSpace, Quantization, SsimVariant, psnr, quantize_8bit,
                                    ssim)
from dreamprune_cli.models.registry import ModelInfo
from dreamprune_cli.progress import NullProgress, ProgressSink


@dataclass
class ImageScore:
    name: str
    psnr: float
    ssim: float


@dataclass
class EvaluationResult:
    """Mean and per-image scores plus the model's cost, the scoring protocol (metric space,
    crop, SSIM variant, 8-bit quantization), the tiling, and where the time went
    (``seconds_reading``: decoding the images, ``seconds_model``: restoring,
    ``seconds_metrics``: quantizing and scoring; ``seconds`` also counts saving and MACs)."""

    metric_space: str
    crop_border: int
    count: int
    psnr: float
    ssim: float
    seconds: float
    macs: int
    macs_256: int
    params: int
    params_nonzero: int
    ssim_variant: str = "basicsr"
    quantization: str = "round"
    tile: int | None = None
    tile_overlap: int | None = None
    seconds_reading: float = 0.0
    seconds_model: float = 0.0
    seconds_metrics: float = 0.0
    per_image: list[ImageScore] = field(default_factory=list)
    outputs: list[torch.Tensor] = field(default_factory=list, repr=False)
    """The first ``keep_outputs`` restorations (8-bit levels, ``(3, H, W)``); not reported."""

    def as_dict(self) -> dict[str, object]:
        data = asdict(replace(self, outputs=[]))  # the images are not part of the report
        del data["outputs"]
        return data


@dataclass(frozen=True)
class PairedGap:
    """Mean per-image PSNR difference of two models scored on the same images, with its
    paired standard error: how far apart the two are, and how precisely a set of this size
    can tell."""

    mean: float
    standard_error: float | None
    count: int

    def describe(self, label: str) -> str:
        """One short line for people, e.g.
        ``student - teacher: -0.32 dB (paired s.e. 0.08 dB, 12 images)``."""
        error = (f" (paired s.e. {self.standard_error:.2f} dB, {self.count} images)"
                 if self.standard_error is not None else "")
        return f"{label}: {self.mean:+.2f} dB{error}"


def psnr_gap(candidate: EvaluationResult, reference: EvaluationResult) -> PairedGap:
    """``candidate - reference`` in PSNR (dB), paired image by image (matched by name).

    The standard error is the sample standard deviation of the per-image differences over
    the square root of their number; ``None`` when there are fewer than two images or a
    difference is not finite (a restoration identical to its target scores infinite PSNR).
    """
    reference_by_name = {score.name: score.psnr for score in reference.per_image}
    if set(reference_by_name) != {score.name for score in candidate.per_image}:
        raise ValueError("psnr_gap needs two evaluations of the same images")
    differences = [score.psnr - reference_by_name[score.name] for score in candidate.per_image]
    if not differences:
        raise ValueError("psnr_gap needs at least one image")
    finite = all(math.isfinite(d) for d in differences)
    mean = math.fsum(differences) / len(differences) if finite else candidate.psnr - reference.psnr
    error = (statistics.stdev(differences) / math.sqrt(len(differences))
             if finite and len(differences) > 1 else None)
    return PairedGap(mean, error, len(differences))


def restore(model: nn.Module, image: torch.Tensor, device: torch.device,
            tiling: Tiling | None = None) -> torch.Tensor:
    """Run ``model`` (an adapter: RGB [0, 1] in and out) on one ``(3, H, W)`` image.

    With ``tiling``, tile by tile (see :mod:`dreamprune_cli.engine.tiling`). Returns float32
    ``(3, H, W)`` on the CPU.
    """
    if tiling is not None:
        return restore_tiled(model, image, device, tiling)
    with torch.inference_mode():
        return model(image.unsqueeze(0).to(device)).squeeze(0).float().cpu()


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is PyTorch's or Python's out-of-memory error (CUDA, MPS or CPU)."""
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(
        phrase in text for phrase in ("out of memory", "can't allocate memory",
                                      "not enough memory"))


@contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """Run the block with one PyTorch intra-op thread, then restore the previous count.

    The metrics are some forty small memory-bound passes per image: a second thread gains
    little on a quiet machine, and on a busy one every pass waits at a barrier for a thread
    the system has descheduled (measured on 2 shared cores: 2.5 s instead of 0.15 s per
    481x321 RGB image). Switching costs under a microsecond.
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _restore_checked(model: nn.Module, image: torch.Tensor, device: torch.device,
                     tiling: Tiling | None, source: Path) -> torch.Tensor:
    """:func:`restore`, turning running out of memory into one line naming the image."""
    try:
        return restore(model, image, device, tiling)
    except (RuntimeError, MemoryError) as exc:
        if not is_out_of_memory(exc):
            raise
        if device.type == "cuda":
            torch.cuda.empty_cache()
        height, width = image.shape[-2:]
        advice = (f"try a smaller $tile than {tiling.tile}" if tiling is not None
                  else "try $tile 512 (tiled inference)")
        raise RuntimeFailure(f"{source}: out of memory restoring this {height}x{width} image "
                             f"on {device}; {advice}") from None


def scoring_protocol(info: ModelInfo | None, metric_space: str | None = None,
                     crop_border: int | None = None, ssim_variant: str | None = None,
                     quantize: str | None = None) -> dict[str, Any]:
    """:func:`evaluate_pairs`'s protocol keywords: each value given, else the model's registry
    entry (``info``; for a bare module without one: RGB, no crop, BasicSR's SSIM, rounding)."""
    return {
        "metric_space": metric_space or (info.metric_space if info else "rgb"),
        "crop_border": crop_border if crop_border is not None else (
            info.crop_border if info else 0),
        "ssim_variant": ssim_variant or (info.ssim_variant if info else "basicsr"),
        "quantization": quantize or (info.quantization if info else "round")}


def evaluate_pairs(model: nn.Module, pairs: list[ImagePair], metric_space: MetricSpace,
                   crop_border: int, device: torch.device, save_dir: Path | None = None,
                   overwrite: bool = False, progress: ProgressSink | None = None, *,
                   ssim_variant: SsimVariant = "basicsr", quantization: Quantization = "round",
                   tiling: Tiling | None = None, keep_outputs: int = 0,
                   sync: RankSync | None = None) -> EvaluationResult:
    """Restore every input, score it against its target, optionally save the restored PNGs.

    Outputs are clamped to [0, 1] and turned into 8-bit levels (``quantization``) before
    scoring, as the authors' evaluations score saved images; the metrics run on one thread
    (:func:`one_intra_op_thread`). MACs are the mean over the
    evaluated images (each at its own size, padded as the model requires, untiled) and also
    reported at 3x256x256.

    Args:
        model: an adapter (``LoadedModel.adapter()``) or any module with the same contract.
        pairs: from :func:`dreamprune_cli.data.pairs.pair_folders`.
        metric_space: ``y`` or ``rgb``.
        crop_border: pixels removed from each side before scoring.
        device: where the model runs.
        save_dir: write ``<name>.png`` restorations here when given.
        overwrite: replace existing PNGs in ``save_dir``.
        progress: receives one update per image.
        ssim_variant: ``basicsr`` or ``matlab`` (see :func:`dreamprune_cli.metrics.ssim`).
        quantization: ``round`` or ``truncate`` (see :func:`dreamprune_cli.metrics.quantize_8bit`).
        tiling: restore tile by tile (bounded memory) instead of whole images.
        keep_outputs: keep the first N scored restorations in ``result.outputs`` (for
            pictures, so that nothing is restored twice).
        sync: several processes (torchrun): each restores and scores its round-robin share
            (and saves its PNGs), and every rank gets the scores of all images in order,
            the same numbers as one process (the times are the slowest rank's).

    Raises:
        UsageError: an image cannot be read, or an output PNG exists (without ``overwrite``).
        RuntimeFailure: out of memory on an image (the message names it and suggests tiling);
            the model's output for an image holds NaN or inf (named).
    """
    progress = progress or NullProgress()
    model = model.to(device).eval()
    if save_dir is not None:
        for pair in pairs:  # refuse before any work rather than halfway
            check_writable(save_dir / f"{pair.name}.png", overwrite)
    size_costs: dict[tuple[int, int], int] = {}
    scores: list[ImageScore] = []
    outputs: list[torch.Tensor] = []
    macs_total = 0
    phase = {"reading": 0.0, "model": 0.0, "metrics": 0.0}
    start = time.perf_counter()
    progress.start("evaluate", len(pairs), "pairs")
    mine = set(shard(len(pairs), sync))
    for index, pair in enumerate(pairs, start=1):
        if index - 1 not in mine:
            continue
        tick = time.perf_counter()
        degraded, target = read_pair(pair)
        phase["reading"] += time.perf_counter() - tick
        tick = time.perf_counter()
        restored = _restore_checked(model, degraded, device, tiling, pair.input_path)
        phase["model"] += time.perf_counter() - tick
        if not bool(torch.isfinite(restored).all()):  # a broken model, not a black image
            raise RuntimeFailure(f"{pair.input_path}: the model's output holds "
                                 f"{describe_nonfinite(restored)}; nothing scored or saved "
                                 "for it (damaged weights, or a model that overflows?)")
        tick = time.perf_counter()
        with one_intra_op_thread():
            restored = quantize_8bit(restored, quantization)
            score = ImageScore(
                pair.name, float(psnr(restored, target, metric_space, crop_border)),
                float(ssim(restored, target, metric_space, crop_border, variant=ssim_variant)))
        phase["metrics"] += time.perf_counter() - tick
        if save_dir is not None:
            write_png(save_dir / f"{pair.name}.png", restored, overwrite=overwrite)
        if index <= keep_outputs:  # the first keep_outputs images, whichever rank had them
            outputs.append(restored)
        size = (degraded.shape[-2], degraded.shape[-1])
        if size not in size_costs:
            size_costs[size] = count_costs(model, (3, *size)).macs
        macs_total += size_costs[size]
        scores.append(score)
        progress.update(index, psnr=score.psnr)
    progress.finish()
    seconds = time.perf_counter() - start
    if sync is not None:
        scores, outputs, macs_total, seconds = gather_scores(sync, mine, scores, outputs,
                                                             macs_total, phase, seconds)
    cost_256 = count_costs(model, (3, 256, 256))
    return EvaluationResult(
        metric_space=metric_space, crop_border=crop_border, count=len(scores),
        psnr=math.fsum(s.psnr for s in scores) / len(scores),
        ssim=math.fsum(s.ssim for s in scores) / len(scores),
        seconds=seconds, macs=macs_total // len(scores), macs_256=cost_256.macs,
        params=cost_256.params, params_nonzero=cost_256.params_nonzero,
        ssim_variant=ssim_variant, quantization=quantization,
        tile=tiling.tile if tiling is not None else None,
        tile_overlap=tiling.overlap if tiling is not None else None,
        seconds_reading=phase["reading"], seconds_model=phase["model"],
        seconds_metrics=phase["metrics"], per_image=scores, outputs=outputs)
