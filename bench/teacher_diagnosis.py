"""Why a bundled teacher fails on real images: its error split into parts, and the rain it
was trained on measured against real rain.

Two measurements (issue 19), on the first ``--pairs`` pairs of the real test sets in
``../shared/realdata`` (read only, never copied; this script fits nothing to them):

* **Error decomposition** of a teacher's output ``o`` against the clean image ``y`` (Y channel
  in 0..255 for derainers, RGB for the dehazer): the mean shift ``mean(o - y)`` per channel
  (a global intensity/colour change), the share of the squared error that is low-frequency
  (a Gaussian of sigma 8 px, kornia: shifts, tints, veils), the share on rain pixels
  (``rainy - clean > 0.04``, i.e. residual rain or damage where rain was), and the ratio of
  high-frequency energy of output and clean image off the rain (below 1: texture removed).
* **Rain statistics** of the rain layer ``rainy - clean`` (grey mean) on Rain100L and on the
  same number of procedural scenes rendered by each of dreamprune's rain renderers: coverage
  (fraction of pixels brightened by more than 0.04), mean brightness on them, the off-streak
  median (a veil), coherence of the structure tensor (1: one direction), and the half-width
  of the autocorrelation along and across the dominant direction (streak length and width).

Usage::

    python bench/teacher_diagnosis.py [--pairs 10] [--weights hinet=old_hinet.safetensors]

Prints the tables and writes ``bench/results/teacher_diagnosis.json`` (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from pathlib import Path

import kornia
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from train_teachers import MIXTURES, REAL_SETS  # noqa: E402

from dreamprune_cli.data.clean import procedural_images  # noqa: E402
from dreamprune_cli.data.images import read_image  # noqa: E402
from dreamprune_cli.data.pairs import pair_folders  # noqa: E402
from dreamprune_cli.metrics import psnr, to_metric_space  # noqa: E402
from dreamprune_cli.models.loading import load_model  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "teacher_diagnosis.json"
RAIN_THRESHOLD = 0.04
LOW_SIGMA = 8.0


def low_pass(image: torch.Tensor) -> torch.Tensor:
    """Gaussian blur of sigma ``LOW_SIGMA`` px (reflect borders), ``(N, C, H, W)``."""
    size = 2 * math.ceil(3 * LOW_SIGMA) + 1
    return kornia.filters.gaussian_blur2d(image, (size, size), (LOW_SIGMA, LOW_SIGMA),
                                          border_type="reflect")


def error_parts(output: torch.Tensor, clean: torch.Tensor, degraded: torch.Tensor,
                space: str) -> dict[str, float | list[float]]:
    """The decomposition of ``output - clean`` described in the module docstring.

    All tensors ``(1, 3, H, W)`` RGB in [0, 1]; shifts are in 8-bit levels (0..255).
    """
    o, y = to_metric_space(output, space), to_metric_space(clean, space)  # 0..255 scale
    error = o - y
    mse = float(error.pow(2).mean())
    rain = ((degraded - clean).mean(dim=1, keepdim=True) > RAIN_THRESHOLD).float()
    high_o, high_y = (o - low_pass(o)), (y - low_pass(y))
    off = 1.0 - rain
    return {
        "psnr": float(psnr(output, clean, space)),
        "input_psnr": float(psnr(degraded, clean, space)),
        "shift": [round(float(v), 2) for v in error.mean(dim=(2, 3))[0]],
        "low_frequency_share": float(low_pass(error).pow(2).mean()) / mse,
        "rain_pixel_share": float((error.pow(2) * rain).mean()) / mse,
        "rain_pixels": float(rain.mean()),
        "texture_ratio": float((high_o.pow(2) * off).sum() / (high_y.pow(2) * off).sum()),
    }


def rain_statistics(rainy: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
    """Statistics of the rain layer ``rainy - clean``, both ``(1, 3, H, W)`` in [0, 1]."""
    layer = (rainy - clean).mean(dim=1, keepdim=True)
    streak = layer > RAIN_THRESHOLD
    gradient = kornia.filters.spatial_gradient(layer)
    gx, gy = gradient[:, :, 0], gradient[:, :, 1]
    jxx, jyy, jxy = float((gx * gx).mean()), float((gy * gy).mean()), float((gx * gy).mean())
    coherence = math.sqrt((jxx - jyy) ** 2 + 4 * jxy ** 2) / (jxx + jyy + 1e-12)
    gradient_angle = 0.5 * math.atan2(2 * jxy, jxx - jyy)
    centred = layer[0, 0] - layer.mean()
    spectrum = torch.fft.rfft2(centred)
    autocorrelation = torch.fft.fftshift(torch.fft.irfft2(spectrum * spectrum.conj(),
                                                          s=centred.shape))
    autocorrelation = autocorrelation / autocorrelation.amax().clamp_min(1e-12)
    height, width = autocorrelation.shape

    def half_width(angle: float) -> int:
        for radius in range(1, 100):
            row = round(height // 2 + radius * math.sin(angle)) % height
            col = round(width // 2 + radius * math.cos(angle)) % width
            if float(autocorrelation[row, col]) < 0.5:
                return radius
        return 100

    along = gradient_angle + math.pi / 2
    return {
        "coverage": float(streak.float().mean()),
        "brightness": float(layer[streak].mean()) if bool(streak.any()) else 0.0,
        "veil": float(layer[~streak].median()) if bool((~streak).any()) else 0.0,
        "coherence": coherence,
        "length_px": 2.0 * half_width(along),
        "width_px": 2.0 * half_width(along + math.pi / 2),
    }


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: sum(row[key] for row in rows) / len(rows) for key in rows[0]}


def _spread(rows: list[dict[str, float]]) -> dict[str, tuple[float, float]]:
    return {key: (min(row[key] for row in rows), max(row[key] for row in rows)) for key in rows[0]}


def diagnose_teacher(name: str, weights: Path | None, pairs: list, space: str) -> dict:
    """Error decomposition of one teacher over ``pairs`` (averaged, and per image)."""
    loaded = load_model(None, weights=weights) if weights else load_model(name)
    adapter = loaded.adapter().eval()
    rows = []
    for pair in pairs:
        degraded = read_image(pair.input_path).unsqueeze(0)
        clean = read_image(pair.target_path).unsqueeze(0)
        with torch.no_grad():
            output = adapter(degraded).clamp(0, 1)
        row = error_parts(output, clean, degraded, space)
        row["name"] = pair.input_path.name
        rows.append(row)
    numeric = [{k: v for k, v in row.items() if isinstance(v, float)} for row in rows]
    shifts = torch.tensor([row["shift"] for row in rows])
    return {"model": name, "weights": str(weights) if weights else "bundled",
            "mean": _mean(numeric), "mean_shift": shifts.mean(dim=0).tolist(),
            "images": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10, help="first N pairs of each set")
    parser.add_argument("--weights", action="append", default=[],
                        help="MODEL=FILE: diagnose this file instead of the bundled teacher")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    weights = dict(item.split("=", 1) for item in args.weights)
    label, rainy_dir, clean_dir = REAL_SETS["derain"]
    if not rainy_dir.is_dir():
        raise SystemExit(f"teacher_diagnosis: {rainy_dir} not found (needs ../shared/realdata)")
    rain_pairs = pair_folders(rainy_dir, clean_dir)[:args.pairs]
    _, hazy_dir, haze_clean_dir = REAL_SETS["dehaze"]
    haze_pairs = pair_folders(hazy_dir, haze_clean_dir)[:args.pairs]
    record: dict = {"pairs": args.pairs, "torch": torch.__version__,
                    "python": platform.python_version(), "teachers": [], "rain": {}}
    for name, pairs, space in (("hinet", rain_pairs, "y"), ("mprnet", rain_pairs, "y"),
                               ("ffa", haze_pairs, "rgb")):
        path = Path(weights[name]) if name in weights else None
        record["teachers"].append(diagnose_teacher(name, path, pairs, space))
    real = [rain_statistics(read_image(p.input_path).unsqueeze(0),
                            read_image(p.target_path).unsqueeze(0)) for p in rain_pairs]
    record["rain"]["Rain100L"] = {"mean": _mean(real), "range": _spread(real)}
    clean = procedural_images(len(rain_pairs), 256, seed=4242)
    generator = torch.Generator().manual_seed(4243)
    for renderer, _ in MIXTURES["derain"]["varied"]:
        label_r = renderer.__name__
        rows = [rain_statistics(renderer(clean[i:i + 1], generator)[0], clean[i:i + 1])
                for i in range(clean.shape[0])]
        record["rain"][label_r] = {"mean": _mean(rows), "range": _spread(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"Error decomposition, first {args.pairs} pairs (shift in 8-bit levels)")
    print("| teacher | weights | input dB | output dB | mean shift | low-freq share "
          "| rain-pixel share (rain px) | texture ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for teacher in record["teachers"]:
        m = teacher["mean"]
        shift = ", ".join(f"{v:+.1f}" for v in teacher["mean_shift"])
        rain_share = (f"{m['rain_pixel_share']:.2f} ({m['rain_pixels']:.3f})"
                      if teacher["model"] != "ffa" else "-")
        print(f"| {teacher['model']} | {Path(teacher['weights']).name} | {m['input_psnr']:.2f} "
              f"| {m['psnr']:.2f} | {shift} | {m['low_frequency_share']:.2f} "
              f"| {rain_share} "
              f"| {m['texture_ratio']:.2f} |")
    print("\nRain layer statistics (mean, [min, max])")
    keys = list(real[0])
    print("| source | " + " | ".join(keys) + " |")
    print("|---|" + "---|" * len(keys))
    for source, stats in record["rain"].items():
        cells = [f"{stats['mean'][k]:.3g} [{stats['range'][k][0]:.3g}, {stats['range'][k][1]:.3g}]"
                 for k in keys]
        print(f"| {source} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
