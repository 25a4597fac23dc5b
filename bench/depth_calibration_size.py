"""Does the depth allocator's calibration size rank blocks as full-size images do?

For a real teacher (default: the authors' GCANet dehazer, whose instance norms make small
crops a poor proxy), every single removable block is removed alone and its drift (mean
squared difference to the teacher's output) measured on synthetic degraded images of the
task at several sides; the table gives each block's drift per size and the Spearman rank
correlation of each size's ranking with the largest size's. Only synthetic images are used:
the choice of ``--depth-calibration-size`` must not be tuned on a real test set.

Usage::

    python bench/depth_calibration_size.py --teacher gcanet --sizes 128 256 512
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import load_average  # noqa: E402
from real_table1 import TEACHERS  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "depth_calibration_size.json"


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation of two equally long lists without ties (formula
    ``1 - 6 sum d^2 / (n (n^2 - 1))``)."""
    def ranks(values: list[float]) -> list[int]:
        order = sorted(range(len(values)), key=values.__getitem__)
        out = [0] * len(values)
        for rank, index in enumerate(order):
            out[index] = rank
        return out

    n = len(a)
    d2 = sum((x - y) ** 2 for x, y in zip(ranks(a), ranks(b)))
    return 1 - 6 * d2 / (n * (n * n - 1))


def main() -> None:
    from dreamprune_cli import load_model
    from dreamprune_cli.data.calibration import synthetic_calibration
    from dreamprune_cli.models.adapter import RestorationAdapter, network_input_size
    from dreamprune_cli.prune.depth.candidates import find_depth_space
    from dreamprune_cli.prune.depth.plan import _probe
    from dreamprune_cli.prune.depth.search import DepthSearch, DepthState

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", choices=sorted(TEACHERS), default="gcanet")
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256, 512])
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = TEACHERS[args.teacher]
    teacher = load_model(spec.model, weights=spec.weights)
    space = find_depth_space(teacher, _probe(teacher))
    names = space.blocks + space.branches
    drifts: dict[int, list[float]] = {}
    start = time.perf_counter()
    for size in args.sizes:
        search = DepthSearch(teacher=teacher.network.eval(),
                             wrap=lambda n: RestorationAdapter(n, teacher.info),
                             calibration=synthetic_calibration(teacher.info.task, args.count,
                                                               size, args.seed),
                             input_size=network_input_size(teacher.info, 256))
        kind = {n: "block" for n in space.blocks} | {n: "branch" for n in space.branches}
        drifts[size] = [search.measure(DepthState(removed=((n, kind[n]),)))[1] for n in names]
        print(f"{size} px: " + ", ".join(f"{n} {d:.3g}" for n, d in zip(names, drifts[size])),
              file=sys.stderr)
    largest = max(args.sizes)
    record = {"teacher": args.teacher, "candidates": names, "count": args.count,
              "seed": args.seed, "drift": {str(k): v for k, v in drifts.items()},
              "spearman_to_largest": {str(k): spearman(v, drifts[largest])
                                      for k, v in drifts.items()},
              "seconds": time.perf_counter() - start, "load": load_average(),
              "date": time.strftime("%Y-%m-%d %H:%M")}
    RESULTS.write_text(json.dumps(record, indent=2))
    print("| block | " + " | ".join(f"drift at {s} px" for s in args.sizes) + " |")
    print("|---|" + "---|" * len(args.sizes))
    for index, name in enumerate(names):
        print(f"| {name} | " + " | ".join(f"{drifts[s][index]:.3g}" for s in args.sizes) + " |")
    print("| rank correlation with " + f"{largest} px | " + " | ".join(
        f"{record['spearman_to_largest'][str(s)]:.2f}" for s in args.sizes) + " |")


if __name__ == "__main__":
    main()
