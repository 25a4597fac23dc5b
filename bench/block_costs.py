"""Where a network's time goes, block by block, beside its MACs: why removing blocks saves
less time than MACs on some networks.

A depth student's latency ratio (its time over the teacher's) equals its MAC ratio only when
the blocks it drops cost as much time per MAC as what stays. With ``m`` the removed blocks'
share of the MACs and ``t`` their share of the time, the student runs at ``1 - t`` of the
teacher's time for ``1 - m`` of its MACs, so

    latency ratio / MAC ratio = (1 - t) / (1 - m),

above 1 exactly when the removed blocks are cheaper per MAC than the rest (``t < m``).

For each model (the official full-size architecture with seeded random weights, the bare
network at one input size), every depth candidate block (what ``--granularity depth`` may
replace by the identity, :func:`dreamprune_cli.prune.depth.candidates.find_depth_space`) and
the rest of the network: its MACs (:func:`dreamprune_cli.flops.count_costs`, the layers
inside the block) and its CPU time (forward pre/post hooks reading ``time.thread_time``, one
intra-op thread so every operator runs on the calling thread; the median over ``--repeats``
forwards after ``--warmup``). CPU time, not wall time: a shared machine's load barely moves
it. ``--remove`` names a removed set per model (e.g. the GCANet student of
``bench/depth_real.py``) and prints the ratio the shares predict beside the one measured:
that student (the blocks replaced by the identity, as depth pruning does) timed against the
teacher in interleaved pairs, the median of the per-pair CPU-time ratios.

Usage::

    python bench/block_costs.py --models gcanet durn_s_p --size 460x620 \
        --remove gcanet=res2,res4,res5,res6 --out bench/results/block_costs.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import load_average  # noqa: E402
from latency import input_shape, seeded_teacher  # noqa: E402

from dreamprune_cli.fileio import write_text_atomic  # noqa: E402
from dreamprune_cli.flops import count_costs  # noqa: E402
from dreamprune_cli.models.adapter import network_input_size  # noqa: E402
from dreamprune_cli.prune.depth.candidates import find_depth_space  # noqa: E402
from dreamprune_cli.prune.depth.search import DepthState  # noqa: E402

REST = "(rest)"


def block_macs(network: torch.nn.Module, blocks: list[str], shape: tuple[int, int, int]
               ) -> dict[str, int]:
    """MACs of each block (its layers' sum) and of the rest, for one ``(C, H, W)`` input."""
    report = count_costs(network, shape)
    macs = {name: 0 for name in [*blocks, REST]}
    for layer in report.layers:
        owner = next((b for b in blocks if layer.name.startswith(b + ".")), REST)
        macs[owner] += layer.macs_dense
    return macs


def block_times(network: torch.nn.Module, blocks: list[str], example: torch.Tensor,
                repeats: int, warmup: int) -> dict[str, float]:
    """Median CPU seconds of each block and of the rest per forward of ``example``."""
    modules = dict(network.named_modules())
    spent: dict[str, float] = {}
    started: dict[str, float] = {}
    handles = []
    for name in blocks:
        def before(_module: Any, _args: Any, name: str = name) -> None:
            started[name] = time.thread_time()

        def after(_module: Any, _args: Any, _out: Any, name: str = name) -> None:
            spent[name] = spent.get(name, 0.0) + time.thread_time() - started.pop(name)

        handles.append(modules[name].register_forward_pre_hook(before))
        handles.append(modules[name].register_forward_hook(after))
    runs: list[dict[str, float]] = []
    try:
        with torch.inference_mode():
            for index in range(warmup + repeats):
                spent.clear()
                start = time.thread_time()
                network(example)
                total = time.thread_time() - start
                if index >= warmup:
                    runs.append({**spent, REST: total - sum(spent.values()), "total": total})
    finally:
        for handle in handles:
            handle.remove()
    return {name: statistics.median(run.get(name, 0.0) for run in runs)
            for name in [*blocks, REST, "total"]}


def profile_model(name: str, size: str, repeats: int, warmup: int) -> dict[str, Any]:
    """One model's rows: per block MACs, CPU seconds, shares and time per MAC."""
    teacher = seeded_teacher(name, "official")
    network = teacher.network.eval()
    height, width = input_shape(size, teacher.info.size_multiple)
    channels = network_input_size(teacher.info, height)[0]
    example = torch.rand(1, channels, height, width, generator=torch.Generator().manual_seed(0))
    space = find_depth_space(teacher, example)
    blocks = space.blocks
    macs = block_macs(network, blocks, (channels, height, width))
    seconds = block_times(network, blocks, example, repeats, warmup)
    total_macs, total_seconds = sum(macs.values()), seconds["total"]
    rows = []
    for block in [*blocks, REST]:
        mac_share, time_share = macs[block] / total_macs, seconds[block] / total_seconds
        rows.append({"block": block, "macs": macs[block], "seconds": seconds[block],
                     "mac_share": mac_share, "time_share": time_share,
                     "time_per_mac": time_share / mac_share if mac_share else None})
    return {"model": name, "input": [channels, height, width], "macs": total_macs,
            "seconds": total_seconds, "repeats": repeats, "rows": rows,
            "repeats_declared": space.repeats, "branches": space.branches,
            "network": network, "example": example}


def measured_ratio(network: torch.nn.Module, removed: list[str], example: torch.Tensor,
                   repeats: int, warmup: int) -> float:
    """Median over ``repeats`` interleaved pairs of the student's CPU time over the teacher's,
    the student being ``network`` with the blocks ``removed`` replaced by the identity."""
    student = DepthState(removed=tuple((name, "block") for name in removed)).apply(network)
    ratios = []
    with torch.inference_mode():
        for index in range(warmup + repeats):
            seconds = []
            for model in (network, student) if index % 2 else (student, network):
                start = time.thread_time()
                model(example)
                seconds.append(time.thread_time() - start)
            if index >= warmup:
                student_s, teacher_s = (seconds[1], seconds[0]) if index % 2 else seconds
                ratios.append(student_s / teacher_s)
    return statistics.median(ratios)


def predicted_ratio(record: dict[str, Any], removed: list[str]) -> dict[str, float]:
    """``(1 - t) / (1 - m)`` for the blocks ``removed`` (see the module docstring).

    Raises:
        SystemExit: a name that is not one of the record's blocks.
    """
    rows = {row["block"]: row for row in record["rows"]}
    unknown = [name for name in removed if name not in rows or name == REST]
    if unknown:
        raise SystemExit(f"--remove {record['model']}: not a depth block: {', '.join(unknown)}"
                         f" (blocks: {', '.join(r for r in rows if r != REST)})")
    mac_share = sum(rows[name]["mac_share"] for name in removed)
    time_share = sum(rows[name]["time_share"] for name in removed)
    return {"removed": removed, "mac_ratio": 1 - mac_share, "latency_ratio": 1 - time_share,
            "latency_per_mac_ratio": (1 - time_share) / (1 - mac_share)}


def _markdown(record: dict[str, Any]) -> str:
    lines = [f"**{record['model']}** (full size, seeded weights, input "
             f"{'x'.join(map(str, record['input']))}, {record['macs'] / 1e9:.1f} GMACs, "
             f"{record['seconds']:.2f} CPU s per forward, median of {record['repeats']})", "",
             "| block | MAC share | CPU-time share | time share / MAC share |",
             "|---|---|---|---|"]
    for row in record["rows"]:
        per_mac = f"{row['time_per_mac']:.2f}" if row["time_per_mac"] is not None else "-"
        lines.append(f"| {row['block']} | {row['mac_share']:.3f} | {row['time_share']:.3f} | "
                     f"{per_mac} |")
    for prediction in record.get("predictions", []):
        lines.append("")
        lines.append(f"Removing {', '.join(prediction['removed'])}: MAC ratio "
                     f"{prediction['mac_ratio']:.3f}, predicted latency ratio "
                     f"{prediction['latency_ratio']:.3f}, latency / MAC ratio "
                     f"{prediction['latency_per_mac_ratio']:.2f}; measured latency ratio "
                     f"{prediction['measured_latency_ratio']:.3f}, latency / MAC ratio "
                     f"{prediction['measured_latency_ratio'] / prediction['mac_ratio']:.2f}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["gcanet", "durn_s", "durn_s_p"])
    parser.add_argument("--size", default="460x620",
                        help="input: SIDE, HxW or rain100l, rounded up to the model's multiple")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--remove", nargs="*", default=[], metavar="MODEL=BLOCK,BLOCK",
                        help="a removed set per model whose latency / MAC ratio to predict")
    parser.add_argument("--out", type=Path, default=None, help="write the records as JSON")
    args = parser.parse_args()
    torch.set_num_threads(1)
    removals: dict[str, list[list[str]]] = {}
    for spec in args.remove:
        model, _, names = spec.partition("=")
        if not names:
            raise SystemExit(f"--remove {spec!r}: expected MODEL=BLOCK,BLOCK")
        removals.setdefault(model, []).append(names.split(","))
    records = []
    for name in args.models:
        record = profile_model(name, args.size, args.repeats, args.warmup)
        network, example = record.pop("network"), record.pop("example")
        record["predictions"] = []
        for removed in removals.get(name, []):
            prediction = predicted_ratio(record, removed)
            prediction["measured_latency_ratio"] = measured_ratio(network, removed, example,
                                                                  args.repeats, args.warmup)
            record["predictions"].append(prediction)
        record["load"] = load_average()
        records.append(record)
        print(_markdown(record) + "\n", flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, json.dumps({"date": time.strftime("%Y-%m-%d %H:%M"),
                                                "torch": torch.__version__,
                                                "records": records}, indent=1) + "\n",
                          overwrite=True)


if __name__ == "__main__":
    main()
