"""Depth students of the authors' real networks, scored once on the real test sets.

For PReNet6 (Rain100L weights, 100 Rain100L pairs, Y) and GCANet (dehazing weights, 50
SOTS-indoor pairs, RGB), at each MAC target F: ``dreamprune prune --granularity depth`` and
``--granularity depth+channel`` (channel part: LAMP), before distillation and, with
``--steps N``, after N joint dream + distill steps with the model preset's schedule. Which blocks and stages
go is chosen by drift on synthetic degraded images of the task (``depth_calibration_size``
px, default 256); no real image touches the choice. Each row records the removed blocks, the
MAC ratio, the paired gap to the teacher (from ``bench/results/real_table1.jsonl``'s teacher
row, same protocol), the student's measured latency against the teacher's (1 thread, one
image of the set's size, interleaved pairs: ``dreamprune_cli.paired_latency``) and the
machine's load. Rows go to ``bench/results/depth_real.jsonl``; rows already there are
skipped (resumable). ``--markdown`` prints the table for docs/RESULTS.md.

Usage::

    python bench/depth_real.py --teacher prenet --targets 0.67 0.58 0.40
    python bench/depth_real.py --teacher gcanet --granularities depth+channel --targets 0.70
    python bench/depth_real.py --markdown
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchkit import append_row, load_average, read_rows  # noqa: E402
from real_table1 import RESULTS as TABLE1, TEACHERS, Bench, gap  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "depth_real.jsonl"
LATENCY_SIZES = {"prenet": (321, 481), "gcanet": (460, 620)}


def _teacher_row(model: str) -> dict[str, Any]:
    for row in read_rows(TABLE1):
        if row["teacher"] == model and row["row"] == "teacher":
            return row
    raise SystemExit(f"no teacher row for {model} in {TABLE1}: run bench/real_table1.py first")


def _latency(teacher: Any, student: Any, size: tuple[int, int]) -> dict[str, float]:
    from dreamprune_cli.engine.latency import paired_latency

    example = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    measured = paired_latency(teacher.adapter().eval(), student.adapter().eval(), example,
                              pairs=3, min_seconds=0.0)
    return {"latency_ratio": measured.ratio, "latency_teacher_s": measured.teacher_seconds,
            "latency_student_s": measured.student_seconds,
            "latency_cpu_ratio": measured.cpu_ratio}


def _pruned(bench: Bench, granularity: str, target: float, calibration_size: int,
            seed: int) -> tuple[Any, dict[str, Any], float]:
    """The depth student (cached in the work folder with its pruning details) and the
    seconds spent pruning it now (0 when cached)."""
    from dreamprune_cli import load_student, save_student
    from dreamprune_cli.prune.depth.plan import prune_depth, prune_depth_channel

    folder = bench.work / f"{granularity}_{target}_{calibration_size}"
    if (folder / "student.safetensors").exists():
        details = json.loads((folder / "details.json").read_text())
        return load_student(folder / "student.safetensors", bench.teacher.name), details, 0.0
    start = time.perf_counter()
    if granularity == "depth":
        result = prune_depth(bench.teacher, target, flops_size=256,
                             calibration_size=calibration_size, seed=seed)
    else:
        result = prune_depth_channel(bench.teacher, target, "lamp", flops_size=256,
                                     calibration_size=calibration_size, seed=seed)
    seconds = time.perf_counter() - start
    details = {"student_granularity": result.granularity, "macs_ratio": result.macs_ratio,
               **{k: result.details.get(k) for k in ("removed", "repeats", "path", "finishing",
                                                     "splits", "chosen_split")}}
    folder.mkdir(parents=True, exist_ok=True)
    save_student(result.student, folder)
    (folder / "details.json").write_text(json.dumps(details))
    return result.student, details, seconds


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    spec = TEACHERS[args.teacher]
    bench = Bench(spec, steps=args.steps, seed=args.seed, work_dir=Path(args.work_dir),
                  limit=None)
    teacher_row = _teacher_row(args.teacher)
    done = {(r["teacher"], r["granularity"], r["target"], r.get("calibration_size"),
             r.get("steps", 0), r.get("inputs", "dreams")) for r in read_rows(RESULTS)}
    for granularity in args.granularities:
        for target in args.targets:
            key = (args.teacher, granularity, target, args.calibration_size, args.steps,
                   args.inputs)
            if key in done:
                print(f"skip {key}: already in {RESULTS.name}", file=sys.stderr)
                continue
            student, details, prune_seconds = _pruned(bench, granularity, target,
                                                      args.calibration_size, args.seed)
            distill_seconds = 0.0
            if args.steps:
                from dreamprune_cli import distill

                plan = bench.schedule()
                start = time.perf_counter()
                distill(bench.teacher, student, args.steps, round_steps=plan["round_steps"],
                        noise_lr=plan["noise_lr"], lambda_orth=plan["lambda_orth"],
                        lambda_tv=plan["lambda_tv"], lambda_far=plan["lambda_far"],
                        student_lr=plan["student_lr"], lambda_kd=plan["lambda_kd"],
                        batch_size=plan["batch_size"], size=plan["size"], seed=args.seed,
                        inputs=args.inputs)
                distill_seconds = time.perf_counter() - start
            scores = bench.evaluate(student)
            row = {"teacher": args.teacher, "granularity": granularity, "target": target,
                   "calibration_size": args.calibration_size, "steps": args.steps,
                   "inputs": args.inputs,
                   **details, "prune_seconds": prune_seconds,
                   "distill_seconds": distill_seconds,
                   "schedule": bench.schedule() if args.steps else None, **scores,
                   **_latency(bench.teacher, student, LATENCY_SIZES[args.teacher]),
                   "threads": args.threads, "load": load_average(),
                   "date": time.strftime("%Y-%m-%d %H:%M")}
            delta, se = gap(row, teacher_row)
            row["gap_db"], row["gap_se"] = delta, se
            append_row(row, RESULTS)
            print(f"{args.teacher} {granularity} F={target} steps={args.steps}: "
                  f"{row['macs_ratio']:.3f} of the MACs, {row['psnr']:.2f} dB ({delta:+.2f}, "
                  f"s.e. {se:.2f}), latency {row['latency_ratio']:.3f}, removed "
                  f"{row['removed']} {row['repeats']}", file=sys.stderr)


def markdown() -> None:
    print("| teacher | granularity | F | steps (inputs) | MACs kept | removed | PSNR | gap (s.e.) | "
          "latency ratio | latency / MAC ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in read_rows(RESULTS):
        removed = ", ".join(row["removed"]) or ""
        removed += "".join(f" {k} {a}->{b}" for k, (a, b) in row["repeats"].items() if a != b)
        print(f"| {row['teacher']} | {row['granularity']} | {row['target']} | "
              f"{row.get('steps', 0)}{' (' + row.get('inputs', 'dreams') + ')' if row.get('steps') else ''} | "
              f"{row['macs_ratio']:.3f} | {removed.strip() or '-'} | {row['psnr']:.2f} | "
              f"{row['gap_db']:+.2f} ({row['gap_se']:.2f}) | {row['latency_ratio']:.3f} | "
              f"{row['latency_ratio'] / row['macs_ratio']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", choices=sorted(TEACHERS), default="prenet")
    parser.add_argument("--granularities", nargs="+", default=["depth", "depth+channel"],
                        choices=["depth", "depth+channel"])
    parser.add_argument("--targets", nargs="+", type=float, default=[0.67, 0.58, 0.40])
    parser.add_argument("--calibration-size", type=int, default=256)
    parser.add_argument("--inputs", choices=["dreams", "synthetic", "mixed"], default="dreams",
                        help="what the student is distilled on (with --steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=0,
                        help="joint dream + distill steps after pruning (the preset's "
                             "schedule); 0: the pruned student alone")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", default="runs/depth_real")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.markdown:
        markdown()
    else:
        run(args)


if __name__ == "__main__":
    main()
