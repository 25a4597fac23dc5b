"""Real speed: CPU latency of teacher and pruned student, beside their MAC ratio.

For each model (tiny variants of the zoo with seeded random weights, the bundled teachers,
and with ``--full-size`` the official full-size architectures with seeded random weights),
each MAC target F and each granularity, the student is made with the ``uniform`` allocator
(``--allocator``; ``unstructured``: weight masks, deployed as the dense architecture with
zeros; ``channel``: the thinner network; ``depth``: whole blocks and stages removed, chosen by
drift; ``depth+channel``: both, channel part by ``--allocator``) and timed against its teacher on one 3x256x256 input
(``--inputs``: also ``rain100l``, a Rain100L-sized 321x481 image rounded up to the size the
model accepts, or ``HxW``; what the bare network receives: GCANet's 4 channels, image and
edge map), at 1 and 2 threads. Runs are paired and interleaved (teacher,
student, student, teacher, ...) after warm-ups so that machine load hits both alike; the table
gives the median of the per-pair ratios ``student time / teacher time`` beside the counted MAC
ratio, and every row records the load average before and after it. On a shared machine treat
the absolute times as indicative: the ratios, measured inside one run, are what to read.
``--profile`` adds, per channel row, where one forward's time goes (torch.profiler, self CPU
time by operator family) for teacher and student.

Usage::

    python bench/latency.py [--models ffa hinet ...] [--targets 0.58 0.4] [--repeats 7]
    python bench/latency.py --full-size ffa hinet --threads 1 --repeats 3 --warmup 1 \
        --granularities channel unstructured --profile --out bench/results/latency_full.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from dreamprune_cli.engine.latency import paired_latency
from dreamprune_cli.errors import UsageError
from dreamprune_cli.fileio import write_text_atomic
from dreamprune_cli.flops import count_costs
from dreamprune_cli.models.adapter import network_input_size
from dreamprune_cli.models.loading import LoadedModel, load_model
from dreamprune_cli.models.registry import build_model, get_model_info, model_config
from dreamprune_cli.models.teachers import bundled_teachers
from dreamprune_cli.prune.channel.plan import prune_channels
from dreamprune_cli.prune.depth.plan import prune_depth, prune_depth_channel
from dreamprune_cli.prune.unstructured.masks import plain_state_dict
from dreamprune_cli.prune.unstructured.plan import prune_model

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchkit beside it
from benchkit import load_average, uptime  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ZOO = ["ffa", "hinet", "mprnet", "aganet", "durn_s", "durn_s_p", "prenet", "gcanet"]
RAIN100L = (321, 481)  # height, width of a Rain100L test image

# operator families for the profile split (aten names, self CPU time; first match wins)
OP_FAMILIES = [
    ("convolutions", ("conv", "mkldnn_convolution", "thnn_conv")),
    ("matrix products (attention)", ("mm", "bmm", "matmul", "addmm", "baddbmm", "linear",
                                     "einsum")),
    ("softmax", ("softmax",)),
    ("norms", ("norm",)),
    ("activations", ("relu", "prelu", "sigmoid", "tanh", "gelu", "silu", "elu", "hardtanh",
                     "clamp")),
    ("pooling and resampling", ("pool", "upsample", "interpolate", "pixel_shuffle",
                                "pixel_unshuffle", "grid_sampler")),
    ("concatenation and copies", ("cat", "copy_", "clone", "contiguous", "stack", "pad",
                                  "reflection_pad", "replication_pad", "constant_pad", "fill_",
                                  "zero_", "empty", "index_select", "split", "chunk")),
    ("element-wise arithmetic", ("add", "mul", "sub", "div", "mean", "sum", "exp", "pow",
                                 "sqrt", "rsqrt", "neg")),
]


def seeded_teacher(name: str, variant: str) -> LoadedModel:
    """Variant ``variant`` (``tiny``, ``official``) of ``name`` with seeded random weights."""
    torch.manual_seed(0)
    return LoadedModel(name=name, info=get_model_info(name),
                       network=build_model(name, variant).eval(),
                       config=model_config(name, variant), weights=None)


def input_shape(spec: str, multiple: int) -> tuple[int, int]:
    """``(H, W)`` of an input spec, each side rounded up to ``multiple`` (as the adapter pads).

    ``"256"`` is 256x256, ``"HxW"`` is H by W, ``"rain100l"`` a 321x481 Rain100L image.

    Raises:
        ValueError: a spec that is none of these.
    """
    if spec == "rain100l":
        height, width = RAIN100L
    elif "x" in spec:
        height, width = (int(v) for v in spec.split("x", 1))
    else:
        height = width = int(spec)
    return (math.ceil(height / multiple) * multiple, math.ceil(width / multiple) * multiple)


def unstructured_student(teacher: LoadedModel, target: float, size: int,
                         allocator: str) -> torch.nn.Module:
    """The masked student deployed as the dense architecture with its zeros."""
    result = prune_model(teacher, target, allocator, flops_size=size)
    network = teacher.info.factory(**teacher.config).eval()
    network.load_state_dict(plain_state_dict(result.student.network))
    return network


def depth_student(teacher: LoadedModel, target: float, granularity: str,
                  args: argparse.Namespace) -> torch.nn.Module:
    """The bare network of a depth (or depth+channel) student of ``teacher`` at ``target``,
    chosen by drift on ``--depth-calibration-size`` synthetic images (with seeded random
    weights the choice is arbitrary but the cost is real: what this script times)."""
    if granularity == "depth":
        result = prune_depth(teacher, target, flops_size=args.size,
                             calibration_size=args.depth_calibration_size)
    else:
        result = prune_depth_channel(teacher, target, args.allocator, flops_size=args.size,
                                     channel_multiple=args.channel_multiple,
                                     calibration_size=args.depth_calibration_size)
    return result.student.network.eval()


def paired_ratios(teacher: torch.nn.Module, student: torch.nn.Module, x: torch.Tensor,
                  repeats: int, warmup: int = 2) -> dict[str, object]:
    """Median times (s) and the median per-pair ratio student / teacher, interleaved
    (:func:`dreamprune_cli.engine.latency.paired_latency`, which ``dreamprune pipeline`` uses
    too), in this benchmark's record format: all per-pair times, ``latency_ratio_min`` (the
    ratio of the fastest runs, the least disturbed by other jobs) and ``cpu_ratio`` (the
    median per-pair ratio of process CPU time: at one thread it leaves out the time other
    jobs held the core; at several threads it sums the threads and is not a latency)."""
    timing = paired_latency(teacher, student, x, pairs=repeats, warmup=warmup)
    return {"teacher_s": timing.teacher_seconds, "student_s": timing.student_seconds,
            "latency_ratio": timing.ratio, "latency_ratio_min": timing.ratio_fastest,
            "pair_ratios": [round(r, 4) for r in timing.pair_ratios],
            "teacher_times_s": [round(t, 6) for t in timing.teacher_times],
            "student_times_s": [round(t, 6) for t in timing.student_times],
            "cpu_ratio": timing.cpu_ratio,
            "teacher_cpu_s": [round(t, 6) for t in timing.teacher_cpu_times],
            "student_cpu_s": [round(t, 6) for t in timing.student_cpu_times]}


def op_family(name: str) -> str:
    """The :data:`OP_FAMILIES` family of an aten operator name (``"other"`` if none)."""
    bare = name.split("::")[-1].lower()
    for family, keys in OP_FAMILIES:
        if any(key in bare for key in keys):
            return family
    return "other"


def profile_split(network: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    """Seconds of one forward's self CPU time per operator family (torch.profiler).

    Self time counts each operator once (a convolution's inner calls are not counted again
    under their own names). One warm-up forward runs first, untimed.
    """
    with torch.inference_mode():
        network(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            network(x)
    split: dict[str, float] = {}
    for event in prof.key_averages():
        family = op_family(event.key)
        split[family] = split.get(family, 0.0) + event.self_cpu_time_total / 1e6
    return {k: round(v, 4) for k, v in sorted(split.items(), key=lambda kv: -kv[1])}


def _write(path: Path, args: argparse.Namespace, load_before: str,
           rows: list[dict[str, object]]) -> dict[str, object]:
    """Write the rows so far (a long run interrupted keeps what it measured)."""
    record = {"size": args.size, "inputs": args.inputs, "repeats": args.repeats,
              "warmup": args.warmup, "allocator": args.allocator, "threads": args.threads,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "uptime_before": load_before, "uptime_after": uptime(),
              "cpu_count": os.cpu_count(), "platform": platform.platform(),
              "torch": torch.__version__, "rows": rows}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=1) + "\n", overwrite=True)
    return record


def _teachers(args: argparse.Namespace) -> list[tuple[str, LoadedModel]]:
    full = args.full_size is not None
    tiny = args.models if args.models is not None else ([] if full else ZOO)
    bundled = args.bundled if args.bundled is not None else \
        ([] if full else bundled_teachers())
    teachers = [(f"{name} (tiny)", seeded_teacher(name, "tiny")) for name in tiny]
    teachers += [(f"{name} (bundled)", load_model(name)) for name in bundled]
    for name in (args.full_size or ZOO) if full else []:
        teachers.append((f"{name} (full-size)", seeded_teacher(name, "official")))
    return teachers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=None,
                        help="tiny variants to time, seeded random weights (default: the zoo, "
                             "none with --full-size)")
    parser.add_argument("--bundled", nargs="*", default=None,
                        help="bundled teachers to time (default: all that ship, none with "
                             "--full-size)")
    parser.add_argument("--full-size", nargs="*", default=None, metavar="MODEL",
                        help="official full-size architectures to time, seeded random weights "
                             f"(no names: {' '.join(ZOO)})")
    parser.add_argument("--targets", nargs="*", type=float, default=[0.58, 0.40])
    parser.add_argument("--granularities", nargs="*", default=["unstructured", "channel"])
    parser.add_argument("--allocator", default="uniform",
                        help="allocator of both granularities (uniform, global, lamp, "
                             "adaptive)")
    parser.add_argument("--channel-multiple", type=int, default=1,
                        help="channel students keep a multiple of this many channels per group "
                             "(16 suits CPU convolution kernels)")
    parser.add_argument("--depth-calibration-size", type=int, default=64,
                        help="side of the synthetic images on which depth students are "
                             "chosen (the choice does not change what is timed much)")
    parser.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    parser.add_argument("--size", type=int, default=256,
                        help="side at which MACs are counted and the targets met")
    parser.add_argument("--inputs", nargs="*", default=["256"],
                        help="timed inputs: SIDE, HxW or rain100l (321x481), each rounded up "
                             "to the model's size multiple")
    parser.add_argument("--repeats", type=int, default=7, help="timed pairs per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forwards of each first")
    parser.add_argument("--profile", action="store_true",
                        help="per channel row, one forward's time by operator family")
    parser.add_argument("--out", type=Path, default=RESULTS / "latency.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    args = parser.parse_args()
    if args.out.exists() and not args.overwrite:
        parser.error(f"--out {args.out}: already exists; pass --overwrite to replace it")
    teachers = _teachers(args)
    load_before = uptime()
    rows: list[dict[str, object]] = []
    for label, teacher in teachers:
        multiple = teacher.info.size_multiple
        input_size = network_input_size(teacher.info, args.size)  # GCANet: RGB + edge map
        dense = count_costs(teacher.network, input_size).macs_dense
        for target in args.targets:
            for granularity in args.granularities:
                start = time.perf_counter()
                if granularity in ("depth", "depth+channel"):
                    try:
                        student = depth_student(teacher, target, granularity, args)
                    except UsageError as exc:  # a model with nothing to remove (HINet)
                        print(f"{label:22s} F={target:.2f} {granularity:12s} skipped: {exc}",
                              flush=True)
                        rows.append({"model": label, "flops_target": target,
                                     "granularity": granularity, "skipped": str(exc)})
                        continue
                elif granularity == "channel":
                    try:
                        student = prune_channels(
                            teacher, target, args.allocator, flops_size=args.size,
                            channel_multiple=args.channel_multiple).student.network.eval()
                    except UsageError as exc:  # e.g. a target whole channels cannot reach
                        print(f"{label:22s} F={target:.2f} {granularity:12s} skipped: {exc}",
                              flush=True)
                        rows.append({"model": label, "flops_target": target,
                                     "granularity": granularity, "skipped": str(exc)})
                        continue
                else:
                    student = unstructured_student(teacher, target, args.size, args.allocator)
                planning = time.perf_counter() - start
                macs = count_costs(student, input_size).macs
                for spec in args.inputs:
                    height, width = input_shape(spec, multiple)
                    x = torch.rand(1, input_size[0], height, width,
                                   generator=torch.Generator().manual_seed(0))
                    for threads in args.threads:
                        torch.set_num_threads(threads)
                        load_start = load_average()
                        timing = paired_ratios(teacher.network, student, x, args.repeats,
                                               args.warmup)
                        row = {"model": label, "flops_target": target,
                               "granularity": granularity, "input": [height, width],
                               "channel_multiple": args.channel_multiple
                               if "channel" in granularity else None,
                               "threads": threads, "macs_ratio": macs / dense,
                               "planning_s": round(planning, 1), **timing,
                               "load_before": load_start, "load_after": load_average()}
                        if args.profile and granularity == "channel" and threads == 1:
                            row["profile_teacher_s"] = profile_split(teacher.network, x)
                            row["profile_student_s"] = profile_split(student, x)
                        rows.append(row)
                        _write(args.out, args, load_before, rows)
                        print(f"{label:22s} F={target:.2f} {granularity:12s} {height}x{width} "
                              f"{threads}t  MACs {row['macs_ratio']:.3f}  latency "
                              f"{row['latency_ratio']:.3f}  CPU time {row['cpu_ratio']:.3f}  "
                              f"(teacher {row['teacher_s']:.2f} s, "
                              f"load {load_start})", flush=True)
                del student
    record = _write(args.out, args, load_before, rows)
    print("\n| model | F | granularity | input | threads | MAC ratio | latency ratio | "
          "latency / MAC ratio | fastest-run ratio | CPU-time ratio | teacher s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        if "skipped" in row:
            print(f"| {row['model']} | {row['flops_target']:.2f} | {row['granularity']} | - | "
                  f"- | unreachable | - | - | - | - | - |")
            continue
        print(f"| {row['model']} | {row['flops_target']:.2f} | {row['granularity']} | "
              f"{row['input'][0]}x{row['input'][1]} | {row['threads']} | "
              f"{row['macs_ratio']:.3f} | {row['latency_ratio']:.3f} | "
              f"{row['latency_ratio'] / row['macs_ratio']:.2f} | "
              f"{row['latency_ratio_min']:.3f} | {row['cpu_ratio']:.3f} | "
              f"{row['teacher_s']:.2f} |")
    print(f"\nload: before {load_before}; after {record['uptime_after']}")


if __name__ == "__main__":
    main()
