"""What a real teacher's dreams look like, with and without the diversity loss L_orth.

For each teacher (PReNet6 with its Rain100L weights, GCANet with its dehazing weights, read
from ``../shared/realdata``) dreams one batch with the model's preset (``presets/<model>.toml``)
twice from the same noise and targets: with the preset's ``lambda_orth`` and with 0 (seed
Fig. 5 and 7). Writes ``docs/dreams_<model>.png`` (one row per dream: dream, the degradation
it carries ``dream - clean`` amplified around grey, and the clean target, for both runs) and
prints, per run:

* the batch diversity (mean pairwise cosine of the teacher's penultimate Gram
  representations, 1 = all alike; what L_orth lowers);
* the degradation's **orientation** and **strength**: from the structure tensor of
  ``dream - clean`` (kornia's Sobel gradients, averaged over the image), the dominant angle
  of its streaks from vertical in degrees and its coherence (0 = no direction, 1 = parallel
  lines), and the mean absolute degradation (0-1 scale). Varied orientation shows as a
  spread of angles across the batch; varied density as a spread of strengths.

Rows go to ``bench/results/dream_figures.json``.

Usage: ``python bench/dream_figures.py [--teachers prenet gcanet] [--steps 200] [--threads 2]``
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import kornia
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchkit beside it
from benchkit import load_1min  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REALDATA = (ROOT / ".." / "shared" / "realdata").resolve()
WEIGHTS = {
    "prenet": REALDATA / "csdwren+PReNet/logs/Rain100L/PReNet6/net_latest.pth",
    "gcanet": REALDATA / "cddlyf+GCANet/models/wacv_gcanet_dehaze.pth",
}
RESULTS = ROOT / "bench" / "results" / "dream_figures.json"


def streak_statistics(degradation: torch.Tensor) -> list[dict[str, float]]:
    """Per image of ``(N, 3, H, W)`` signed degradations: dominant streak angle from vertical
    (degrees, in (-90, 90]), coherence in [0, 1] and mean absolute value."""
    gray = degradation.mean(dim=1, keepdim=True)
    grad = kornia.filters.spatial_gradient(gray, mode="sobel", normalized=True)
    gx, gy = grad[:, 0, 0], grad[:, 0, 1]
    jxx, jyy, jxy = (gx * gx).mean((1, 2)), (gy * gy).mean((1, 2)), (gx * gy).mean((1, 2))
    stats = []
    for i in range(gray.shape[0]):
        # the gradient's dominant direction is across the streaks; the streaks run at 90 deg
        # to it; measured from vertical, a vertical streak has a horizontal gradient (0 deg)
        theta = 0.5 * math.atan2(2 * float(jxy[i]), float(jxx[i] - jyy[i]))
        coherence = math.sqrt(float(jxx[i] - jyy[i]) ** 2 + 4 * float(jxy[i]) ** 2) / \
            max(float(jxx[i] + jyy[i]), 1e-12)
        stats.append({"angle_from_vertical": math.degrees(theta), "coherence": coherence,
                      "strength": float(degradation[i].abs().mean())})
    return stats


def run_teacher(name: str, steps: int, seed: int) -> dict[str, Any]:
    from dreamprune_cli import dream, load_model
    from dreamprune_cli.report import save_grid
    from dreamprune_cli.settings import resolve_settings

    teacher = load_model(name, weights=WEIGHTS[name])
    preset = resolve_settings({"model": name}, env={}).settings.dream
    out: dict[str, Any] = {"teacher": name, "steps": steps, "batch": preset.batch_size,
                           "size": preset.size, "noise_lr": preset.noise_lr, "runs": {}}
    columns: list[list[torch.Tensor]] = [[] for _ in range(preset.batch_size)]
    labels: list[str] = []
    for lambda_orth in (preset.lambda_orth, 0.0):
        start = time.perf_counter()
        result = dream(teacher, count=preset.batch_size, steps=steps, size=preset.size,
                       batch_size=preset.batch_size, seed=seed, noise_lr=preset.noise_lr,
                       lambda_orth=lambda_orth, lambda_tv=preset.lambda_tv,
                       lambda_far=preset.lambda_far)
        degradation = result.dreams - result.clean
        stats = streak_statistics(degradation)
        angles = [s["angle_from_vertical"] for s in stats]
        out["runs"][str(lambda_orth)] = {
            "diversity_mean_cosine": result.diversity, "seconds": time.perf_counter() - start,
            "per_dream": stats,
            "angle_spread_deg": float(torch.tensor(angles).std()),
            "strength_range": [min(s["strength"] for s in stats),
                               max(s["strength"] for s in stats)]}
        shown = (0.5 + 4 * degradation).clamp(0, 1)
        for i in range(preset.batch_size):
            columns[i] += [result.dreams[i], shown[i], result.clean[i]]
        labels += [f"dream, L_orth {lambda_orth:g}", "dream - clean (x4)", "clean target"]
    figure = ROOT / "docs" / f"dreams_{name}.png"
    save_grid(figure, columns, overwrite=True, column_labels=labels,
              row_labels=[f"dream {i + 1}" for i in range(len(columns))])
    out["figure"] = str(figure.relative_to(ROOT))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", nargs="+", default=sorted(WEIGHTS), choices=sorted(WEIGHTS))
    parser.add_argument("--steps", type=int, default=200, help="dreaming steps (the dream "
                        "command's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for name in args.teachers:
        if not WEIGHTS[name].exists():
            raise SystemExit(f"{WEIGHTS[name]}: missing (the real data is ../shared/realdata)")
        load = load_1min()
        row = run_teacher(name, args.steps, args.seed)
        row.update(load_before=load, threads=args.threads, machine=platform.machine(),
                   date=time.strftime("%Y-%m-%d"))
        results[name] = row
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2))
        for lam, run in row["runs"].items():
            print(f"{name} lambda_orth {lam}: diversity {run['diversity_mean_cosine']:.4f}, "
                  f"angle spread {run['angle_spread_deg']:.1f} deg, strength "
                  f"{run['strength_range'][0]:.3f}-{run['strength_range'][1]:.3f}, "
                  f"{run['seconds']:.0f} s")


if __name__ == "__main__":
    main()
