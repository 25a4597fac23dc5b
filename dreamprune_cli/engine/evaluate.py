"""Scoring a model on pairs of degraded and clean images."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from dreamprune_cli.data.images import read_image, write_png
from dreamprune_cli.data.pairs import ImagePair
from dreamprune_cli.engine.finite import describe_nonfinite
from dreamprune_cli.errors import RuntimeFailure
from dreamprune_cli.fileio import check_writable
from dreamprune_cli.flops import count_costs
from dreamprune_cli.metrics import MetricSpace, psnr, quantize_8bit, ssim
from dreamprune_cli.progress import NullProgress, ProgressSink


@dataclass
class ImageScore:
    name: str
    psnr: float
    ssim: float


@dataclass
class EvaluationResult:
    """Mean and per-image scores plus the model's cost."""

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
    per_image: list[ImageScore] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


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


def restore(model: nn.Module, image: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Run ``model`` (an adapter: RGB [0, 1] in and out) on one ``(3, H, W)`` image."""
    with torch.inference_mode():
        return model(image.unsqueeze(0).to(device)).squeeze(0).float().cpu()


def evaluate_pairs(model: nn.Module, pairs: list[ImagePair], metric_space: MetricSpace,
                   crop_border: int, device: torch.device, save_dir: Path | None = None,
                   overwrite: bool = False, progress: ProgressSink | None = None
                   ) -> EvaluationResult:
    """Restore every input, score it against its target, optionally save the restored PNGs.

    Outputs are clamped to [0, 1] and rounded to 8-bit levels before scoring, as the authors'
    evaluations score saved images. MACs are the mean over the evaluated images (each at its
    own size, padded as the model requires) and also reported at 3x256x256.

    Args:
        model: an adapter (``LoadedModel.adapter()``) or any module with the same contract.
        pairs: from :func:`dreamprune_cli.data.pairs.pair_folders`.
        metric_space: ``y`` or ``rgb``.
        crop_border: pixels removed from each side before scoring.
        device: where the model runs.
        save_dir: write ``<name>.png`` restorations here when given.
        overwrite: replace existing PNGs in ``save_dir``.
        progress: receives one update per image.

    Raises:
        RuntimeFailure: the model's output for an image holds NaN or inf (named).
    """
    progress = progress or NullProgress()
    model = model.to(device).eval()
    if save_dir is not None:
        for pair in pairs:  # refuse before any work rather than halfway
            check_writable(save_dir / f"{pair.name}.png", overwrite)
    size_costs: dict[tuple[int, int], int] = {}
    scores: list[ImageScore] = []
    macs_total = 0
    start = time.perf_counter()
    progress.start("evaluate", len(pairs))
    for index, pair in enumerate(pairs, start=1):
        degraded, target = read_image(pair.input_path), read_image(pair.target_path)
        output = restore(model, degraded, device)
        if not bool(torch.isfinite(output).all()):  # a broken model, not a black image
            raise RuntimeFailure(f"{pair.input_path}: the model's output holds "
                                 f"{describe_nonfinite(output)}; nothing scored or saved "
                                 "for it (damaged weights, or a model that overflows?)")
        restored = quantize_8bit(output)
        if save_dir is not None:
            write_png(save_dir / f"{pair.name}.png", restored, overwrite=overwrite)
        size = (degraded.shape[-2], degraded.shape[-1])
        if size not in size_costs:
            size_costs[size] = count_costs(model, (3, *size)).macs
        macs_total += size_costs[size]
        score = ImageScore(pair.name, float(psnr(restored, target, metric_space, crop_border)),
                           float(ssim(restored, target, metric_space, crop_border)))
        scores.append(score)
        progress.update(index, psnr=score.psnr)
    progress.finish()
    seconds = time.perf_counter() - start
    cost_256 = count_costs(model, (3, 256, 256))
    return EvaluationResult(
        metric_space=metric_space, crop_border=crop_border, count=len(scores),
        psnr=math.fsum(s.psnr for s in scores) / len(scores),
        ssim=math.fsum(s.ssim for s in scores) / len(scores),
        seconds=seconds, macs=macs_total // len(scores), macs_256=cost_256.macs,
        params=cost_256.params, params_nonzero=cost_256.params_nonzero, per_image=scores)
