"""Speed of ``dreamprune evaluate``: the identity model on all 100 Rain100L test pairs.

The target (issue 14): at most 10 s for the 100 pairs on 2 CPU cores, where the metrics used
to dominate (1.5 s of SSIM per 481x321 image with the 2-D 11x11 filtering). Each row runs the
real command in a fresh process (``python -m dreamprune_cli evaluate --model identity ...
--json``, ``OMP_NUM_THREADS`` = the row's threads) and reports the process's wall time
(Python and torch start-up included), its CPU time (user + system, all threads), the
command's own ``seconds`` and its phases: ``reading`` (decoding both PNGs), ``model`` (the
identity pass) and ``metrics`` (8-bit quantization, PSNR, SSIM). A run on one pair gives
the fixed cost (start-up, imports, MAC counting). Protocols: the model's
default (RGB, BasicSR's SSIM), Y with BasicSR's SSIM, and Y with MATLAB's (PReNet's).

The machine is shared, so ``uptime`` is recorded before and after the runs. On a busy
machine the wall time of a one-thread run is its CPU time stretched by the load: the CPU
time is what the run takes alone on a core. Each protocol runs once per thread count in
``--threads`` (default 1 and 2): two intra-op threads on two busy cores can be many times
slower than one, because each of the metrics' small tensor operations waits at a thread
barrier for a thread that the kernel has descheduled (and spins meanwhile).

A check follows on the first ``--check`` pairs (one thread): the separable SSIM against the
straightforward 2-D filtering (an 11x11 convolution per statistic, float64), for each
protocol, with the time of each and the largest difference.

Results go to ``bench/results/eval_speed.json``.

Usage::

    python bench/eval_speed.py                   # 1 and 2 threads, 100 pairs, 3 checked
    python bench/eval_speed.py --threads 2 --limit 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dreamprune_cli.data.pairs import pair_folders, read_pair
from dreamprune_cli.metrics import gaussian_kernel_1d, ssim, to_metric_space

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchkit beside it
from benchkit import uptime  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS_JSON = ROOT / "bench" / "results" / "eval_speed.json"
RAIN100L = (ROOT / ".." / "shared" / "realdata" / "KaneWANG0816+RGR" / "rain100L" / "test"
            / "small").resolve()
TARGET_SECONDS = 10.0
PROTOCOLS = (("rgb", "basicsr"), ("y", "basicsr"), ("y", "matlab"))


def run_evaluate(space: str, variant: str, threads: int, limit: int) -> dict[str, Any]:
    """One ``dreamprune evaluate`` process; its JSON plus the outside wall time."""
    command = [sys.executable, "-m", "dreamprune_cli", "--device", "cpu", "evaluate",
               "--model", "identity", "--input-dir", str(RAIN100L / "rain"),
               "--target-dir", str(RAIN100L / "norain"), "--metric-space", space,
               "--ssim-variant", variant, "--limit", str(limit), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"evaluate failed ({done.returncode}): {done.stderr.strip()}")
    data = json.loads(done.stdout)
    return {"threads": threads, "metric_space": space, "ssim_variant": variant,
            "count": data["count"],
            "wall_seconds": wall, "cpu_seconds": cpu, "seconds": data["seconds"],
            "seconds_reading": data["seconds_reading"], "seconds_model": data["seconds_model"],
            "seconds_metrics": data["seconds_metrics"], "psnr": data["psnr"],
            "ssim": data["ssim"], "command": " ".join(command[1:])}


def ssim_2d(output: torch.Tensor, target: torch.Tensor, space: str, variant: str) -> float:
    """The straightforward reference: 2-D 11x11 Gaussian convolutions (float64)."""
    g = gaussian_kernel_1d()
    window = torch.outer(g, g).view(1, 1, 11, 11)
    a = to_metric_space(output, space).unsqueeze(1)  # (C, 1, H, W)
    b = to_metric_space(target, space).unsqueeze(1)
    if variant == "matlab":
        a, b = F.pad(a, (5,) * 4, mode="replicate"), F.pad(b, (5,) * 4, mode="replicate")
        c1, c2 = 0.01**2, 0.03**2
    else:
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    var_a = F.conv2d(a * a, window) - mu_a**2
    var_b = F.conv2d(b * b, window) - mu_b**2
    if variant == "matlab":
        var_a, var_b = var_a.clamp(min=0), var_b.clamp(min=0)
    cov = F.conv2d(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.flatten(1).mean(dim=1).mean())


def check_against_2d(count: int, threads: int) -> list[dict[str, Any]]:
    """Separable vs 2-D SSIM on the first ``count`` pairs: times and largest difference."""
    torch.set_num_threads(threads)
    pairs = pair_folders(RAIN100L / "rain", RAIN100L / "norain", limit=count)
    images = [read_pair(pair) for pair in pairs]
    rows = []
    for space, variant in PROTOCOLS:
        fast_s = slow_s = diff = 0.0
        for degraded, target in images:
            tick = time.perf_counter()
            fast = float(ssim(degraded, target, space, variant=variant))  # type: ignore[arg-type]
            fast_s += time.perf_counter() - tick
            tick = time.perf_counter()
            slow = ssim_2d(degraded, target, space, variant)
            slow_s += time.perf_counter() - tick
            diff = max(diff, abs(fast - slow))
        rows.append({"metric_space": space, "ssim_variant": variant, "images": len(images),
                     "separable_seconds_per_image": fast_s / len(images),
                     "conv2d_seconds_per_image": slow_s / len(images),
                     "max_abs_difference": diff})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2",
                        help="comma-separated OMP_NUM_THREADS values, one run each")
    parser.add_argument("--limit", type=int, default=100, help="pairs evaluated")
    parser.add_argument("--check", type=int, default=3, help="pairs for the 2-D check")
    args = parser.parse_args()
    if not (RAIN100L / "rain").is_dir():
        raise SystemExit(f"Rain100L test pairs not found at {RAIN100L}")
    threads = [int(t) for t in args.threads.split(",")]
    load_before = uptime()
    runs = [run_evaluate(space, variant, t, args.limit)
            for t in threads for space, variant in PROTOCOLS]
    startup = run_evaluate("rgb", "basicsr", 1, 1)  # the fixed cost: start-up and one pair
    load_after = uptime()
    checks = check_against_2d(args.check, 1)

    print(f"dreamprune evaluate --model identity, {runs[0]['count']} Rain100L pairs "
          f"(target <= {TARGET_SECONDS:.0f} s on 2 cores)")
    print(f"{'threads':>7s} {'space':5s} {'SSIM':8s} {'wall s':>7s} {'CPU s':>7s} "
          f"{'eval s':>7s} {'read s':>7s} "
          f"{'model s':>7s} {'metric s':>8s} {'PSNR':>7s} {'SSIM':>7s}")
    for r in runs:
        print(f"{r['threads']:7d} {r['metric_space']:5s} {r['ssim_variant']:8s} "
              f"{r['wall_seconds']:7.2f} {r['cpu_seconds']:7.2f} "
              f"{r['seconds']:7.2f} {r['seconds_reading']:7.2f} {r['seconds_model']:7.2f} "
              f"{r['seconds_metrics']:8.2f} {r['psnr']:7.3f} {r['ssim']:7.4f}")
    print(f"\nstart-up and one pair (1 thread): {startup['wall_seconds']:.2f} s wall, "
          f"{startup['cpu_seconds']:.2f} s CPU")
    print(f"\nSSIM per image, separable vs 2-D 11x11 filtering ({args.check} pairs):")
    print(f"{'space':5s} {'SSIM':8s} {'separable s':>11s} {'2-D s':>7s} {'max |diff|':>10s}")
    for c in checks:
        print(f"{c['metric_space']:5s} {c['ssim_variant']:8s} "
              f"{c['separable_seconds_per_image']:11.4f} {c['conv2d_seconds_per_image']:7.3f} "
              f"{c['max_abs_difference']:10.1e}")
    print(f"\nuptime before: {load_before}\nuptime after:  {load_after}")
    results = {"threads": threads, "target_seconds": TARGET_SECONDS, "runs": runs, "startup_one_pair": startup,
               "ssim_check": checks, "uptime_before": load_before, "uptime_after": load_after,
               "cpu_count": os.cpu_count(), "python": platform.python_version(),
               "torch": torch.__version__, "machine": platform.machine(),
               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS_JSON.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
