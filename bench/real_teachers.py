"""The authors' own checkpoints scored on the real test sets, as their papers report them.

Runs ``dreamprune --json evaluate`` exactly as a user does (one subprocess per row) on the
real pairs in ``../shared/realdata`` (never copied into the repository): PReNet, PReNet_r, PRN
and PRN_r with their Rain100L weights on the 100 Rain100L test pairs (Y, the authors' 8-bit
truncation, Wang's SSIM), the Rain100H PReNet on Rain100L (a cross-set row), GCANet's dehazing
weights on the 50 shared SOTS-indoor pairs (RGB), and the degraded inputs themselves
(``identity``). Prints a table beside the published figures and appends one JSON row per
evaluation to ``bench/results/real_teachers.jsonl``; rows already there (same row name) are
skipped, so an interrupted run resumes.

Usage: ``python bench/real_teachers.py [--rows prenet,prn_r] [--threads 2] [--limit N]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchkit beside it
from benchkit import append_row, load_1min, read_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REALDATA = (ROOT / ".." / "shared" / "realdata").resolve()
RESULTS = ROOT / "bench" / "results" / "real_teachers.jsonl"
RAIN100L = REALDATA / "KaneWANG0816+RGR" / "rain100L" / "test" / "small"
SOTS = REALDATA / "square-moon+haze" / "data" / "RESIDE-IN" / "test"
PRENET_LOGS = REALDATA / "csdwren+PReNet" / "logs"

# row -> (model, weights, input dir, target dir, extra flags, published PSNR/SSIM or None)
ROWS: dict[str, tuple[str, Path | None, Path, Path, list[str], tuple[float, float] | None]] = {
    "rain100l_input": ("identity", None, RAIN100L / "rain", RAIN100L / "norain",
                       ["--metric-space", "y"], (26.90, None)),
    "prenet": ("prenet", PRENET_LOGS / "Rain100L/PReNet6/net_latest.pth", RAIN100L / "rain",
               RAIN100L / "norain", [], (37.48, 0.979)),
    "prenet_r": ("prenet_r", PRENET_LOGS / "Rain100L/PReNet6_r/net_latest.pth",
                 RAIN100L / "rain", RAIN100L / "norain", [], (37.10, 0.977)),
    "prn": ("prn", PRENET_LOGS / "Rain100L/PRN6/net_latest.pth", RAIN100L / "rain",
            RAIN100L / "norain", [], (36.99, 0.977)),
    "prn_r": ("prn_r", PRENET_LOGS / "Rain100L/PRN6_r/net_latest.pth", RAIN100L / "rain",
              RAIN100L / "norain", [], (36.11, 0.973)),
    "prn_r_round": ("prn_r", PRENET_LOGS / "Rain100L/PRN6_r/net_latest.pth",
                    RAIN100L / "rain", RAIN100L / "norain", ["--quantize", "round"], None),
    "prn_r_matlab_ssim": ("prn_r", PRENET_LOGS / "Rain100L/PRN6_r/net_latest.pth",
                          RAIN100L / "rain", RAIN100L / "norain", ["--ssim-variant", "matlab"],
                          None),
    "prenet_rain100h_on_rain100l": ("prenet", PRENET_LOGS / "Rain100H/PReNet6/net_latest.pth",
                                    RAIN100L / "rain", RAIN100L / "norain", [], None),
    "sots_input": ("identity", None, SOTS / "hazy", SOTS / "GT", ["--metric-space", "rgb"],
                   None),
    "gcanet": ("gcanet", REALDATA / "cddlyf+GCANet/models/wacv_gcanet_dehaze.pth",
               SOTS / "hazy", SOTS / "GT", [], (30.23, 0.980)),
}


def _done() -> dict[str, dict]:
    if not RESULTS.exists():
        return {}
    rows = read_rows(RESULTS)
    return {row["row"]: row for row in rows}


def _run(name: str, threads: int, limit: int | None) -> dict:
    model, weights, inputs, targets, extra, published = ROWS[name]
    command = [sys.executable, "-m", "dreamprune_cli", "--json", "evaluate", "--model", model,
               "--input-dir", str(inputs), "--target-dir", str(targets), *extra]
    if weights is not None:
        command += ["--weights", str(weights)]
    if limit is not None:
        command += ["--limit", str(limit)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    load_before = load_1min()
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    report = json.loads(done.stdout)
    report.pop("per_image", None)
    return {"row": name, "published": published, "wall_s": round(wall, 1),
            "threads": threads, "load_before": load_before,
            "load_after": load_1min(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "command": " ".join(command[1:]), **report}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated row names")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="first N pairs (a smoke run)")
    args = parser.parse_args()
    if not REALDATA.exists():
        raise SystemExit(f"real data not found at {REALDATA}")
    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = sorted(set(wanted) - set(ROWS))
    if unknown:
        raise SystemExit(f"unknown rows: {', '.join(unknown)}; known: {', '.join(ROWS)}")
    done = _done() if args.limit is None else {}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        if name in done:
            continue
        row = _run(name, args.threads, args.limit)
        print(f"{name}: {row['psnr']:.4f} dB / {row['ssim']:.4f} ({row['wall_s']} s)",
              file=sys.stderr)
        if args.limit is None:
            append_row(row, RESULTS)
            done[name] = row
    print("| row | model | pairs | space | quantize | PSNR (dB) | SSIM | published | "
          "wall (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in wanted:
        row = done.get(name)
        if row is None:
            continue
        published = row["published"]
        shown = ("—" if published is None else
                 f"{published[0]:.2f}" + (f" / {published[1]:.3f}" if published[1] else ""))
        print(f"| {name} | {row['model']} | {row['count']} | {row['metric_space']} | "
              f"{row.get('quantization', '?')} | {row['psnr']:.2f} | {row['ssim']:.4f} | "
              f"{shown} | {row['wall_s']} |")


if __name__ == "__main__":
    main()
