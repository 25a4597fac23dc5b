"""Real speed: CPU latency of teacher and pruned student, beside their MAC ratio.

For each model (tiny variants of the zoo with seeded random weights, and the bundled
teachers), each MAC target F and each granularity, the student is made with the ``uniform``
allocator (``unstructured``: weight masks, deployed as the dense architecture with zeros;
``channel``: the thinner network) and timed against its teacher on one 3x256x256 image (what
the bare network receives: GCANet's 4 channels, image and edge map), at 1
and 2 threads. Runs are paired and interleaved (teacher, student, student, teacher, ...) so
that machine load hits both alike; the table gives the median of the per-pair ratios
``student time / teacher time`` beside the counted MAC ratio. On a shared machine treat the
absolute times as indicative: the ratios, measured inside one run, are what to read.

Usage::

    python bench/latency.py [--models ffa hinet ...] [--targets 0.58 0.4] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

import torch

from dreamprune_cli.prune.channel_plan import prune_channels
from dreamprune_cli.prune.plan import prune_model
from dreamprune_cli.errors import UsageError
from dreamprune_cli.flops import count_costs
from dreamprune_cli.models.adapter import network_input_size
from dreamprune_cli.models.loading import LoadedModel, load_model
from dreamprune_cli.models.registry import build_model, get_model_info, model_config
from dreamprune_cli.models.teachers import bundled_teachers
from dreamprune_cli.prune.masks import plain_state_dict

RESULTS = Path(__file__).resolve().parent / "results"
ZOO = ["ffa", "hinet", "mprnet", "aganet", "durn_s", "durn_s_p", "prenet", "gcanet"]


def uptime() -> str:
    """The machine's load averages (``uptime``), or ``"unknown"``."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def tiny_teacher(name: str) -> LoadedModel:
    """The tiny variant of ``name`` with seeded random weights."""
    torch.manual_seed(0)
    return LoadedModel(name=name, info=get_model_info(name),
                       network=build_model(name, "tiny").eval(),
                       config=model_config(name, "tiny"), weights=None)


def unstructured_student(teacher: LoadedModel, target: float, size: int) -> torch.nn.Module:
    """The masked student deployed as the dense architecture with its zeros."""
    result = prune_model(teacher, target, "uniform", flops_size=size)
    network = teacher.info.factory(**teacher.config).eval()
    network.load_state_dict(plain_state_dict(result.student.network))
    return network


def paired_ratios(teacher: torch.nn.Module, student: torch.nn.Module, x: torch.Tensor,
                  repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median times (s) and the median per-pair ratio student / teacher, interleaved."""
    with torch.inference_mode():
        for _ in range(warmup):
            teacher(x)
            student(x)
        times: dict[str, list[float]] = {"teacher": [], "student": []}
        for index in range(repeats):
            order = [("teacher", teacher), ("student", student)]
            if index % 2:
                order.reverse()
            for name, network in order:
                start = time.perf_counter()
                network(x)
                times[name].append(time.perf_counter() - start)
    ratios = [s / t for s, t in zip(times["student"], times["teacher"])]
    return {"teacher_s": statistics.median(times["teacher"]),
            "student_s": statistics.median(times["student"]),
            "latency_ratio": statistics.median(ratios)}


def _write(path: Path, args: argparse.Namespace, load_before: str,
           rows: list[dict[str, object]]) -> dict[str, object]:
    """Write the rows so far (a long run interrupted keeps what it measured)."""
    record = {"size": args.size, "repeats": args.repeats, "allocator": "uniform",
              "threads": args.threads, "uptime_before": load_before, "uptime_after": uptime(),
              "cpu_count": os.cpu_count(), "platform": platform.platform(),
              "torch": torch.__version__, "rows": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=ZOO,
                        help="tiny variants to time (seeded random weights)")
    parser.add_argument("--bundled", nargs="*", default=None,
                        help="bundled teachers to time (default: all that ship)")
    parser.add_argument("--targets", nargs="*", type=float, default=[0.58, 0.40])
    parser.add_argument("--granularities", nargs="*", default=["unstructured", "channel"])
    parser.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "latency.json")
    args = parser.parse_args()
    bundled = bundled_teachers() if args.bundled is None else args.bundled
    teachers = [(f"{name} (tiny)", tiny_teacher(name)) for name in args.models]
    teachers += [(f"{name} (bundled)", load_model(name)) for name in bundled]
    load_before = uptime()
    rows = []
    for label, teacher in teachers:
        input_size = network_input_size(teacher.info, args.size)  # GCANet: RGB + edge map
        x = torch.rand(1, *input_size, generator=torch.Generator().manual_seed(0))
        dense = count_costs(teacher.network, input_size).macs_dense
        for target in args.targets:
            for granularity in args.granularities:
                if granularity == "channel":
                    try:
                        student = prune_channels(teacher, target, "uniform",
                                                 flops_size=args.size).student.network
                    except UsageError as exc:  # e.g. a target whole channels cannot reach
                        print(f"{label:18s} F={target:.2f} {granularity:12s} skipped: {exc}",
                              flush=True)
                        rows.append({"model": label, "flops_target": target,
                                     "granularity": granularity, "skipped": str(exc)})
                        continue
                else:
                    student = unstructured_student(teacher, target, args.size)
                macs = count_costs(student, input_size).macs
                for threads in args.threads:
                    torch.set_num_threads(threads)
                    timing = paired_ratios(teacher.network, student, x, args.repeats)
                    row = {"model": label, "flops_target": target, "granularity": granularity,
                           "threads": threads, "macs_ratio": macs / dense, **timing}
                    rows.append(row)
                    _write(args.out, args, load_before, rows)
                    print(f"{label:18s} F={target:.2f} {granularity:12s} {threads}t  "
                          f"MACs {row['macs_ratio']:.3f}  latency {row['latency_ratio']:.3f}  "
                          f"(teacher {row['teacher_s'] * 1e3:.0f} ms)", flush=True)
    record = _write(args.out, args, load_before, rows)
    print("\n| model | F | granularity | threads | MAC ratio | latency ratio | teacher ms |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        if "skipped" in row:
            print(f"| {row['model']} | {row['flops_target']:.2f} | {row['granularity']} | "
                  f"- | unreachable | - | - |")
            continue
        print(f"| {row['model']} | {row['flops_target']:.2f} | {row['granularity']} | "
              f"{row['threads']} | {row['macs_ratio']:.3f} | {row['latency_ratio']:.3f} | "
              f"{row['teacher_s'] * 1e3:.0f} |")
    print(f"\nload: before {load_before}; after {record['uptime_after']}")


if __name__ == "__main__":
    main()
