"""CPU threads on a busy machine: the joint step and the evaluation at 1 and 2 threads, on an
idle machine and beside one competing busy process, in one run, as ratios.

Each measurement runs in its own worker process (``--worker``) so that the thread count is
set before any parallel work; the competing process is a Python busy loop started before the
worker and stopped after it. Conditions are interleaved over ``--reps`` repetitions so that
load from other users of the machine hits all of them alike. The one-minute load average is
recorded before every measurement (the machine may be shared). With ``--pipeline`` it also
times the README's default command (``dreamprune pipeline --model ffa --flops-target 0.58``,
default threads) idle and beside one busy process.

Usage::

    python bench/threads.py [--reps 2] [--max-seconds 20] [--pipeline]

Prints a Markdown table and writes ``bench/results/threads.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchkit beside it
from benchkit import load_1min, load_average  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BUSY_LOOP = "while True:\n    pass\n"


def worker(threads: int, max_seconds: float, max_steps: int) -> dict[str, Any]:
    """Seconds per joint step (median) and seconds per evaluation of the FFA test set."""
    import torch

    torch.set_num_threads(threads)
    from dreamprune_cli.data.clean import make_clean_source
    from dreamprune_cli.data.pairs import pair_folders
    from dreamprune_cli.data.synthetic import synthetic_test_set
    from dreamprune_cli.engine.runtime import resolve_precision
    from dreamprune_cli.engine.distill import Distiller
    from dreamprune_cli.engine.dream import Dreamer, DreamSchedule
    from dreamprune_cli.engine.evaluate import evaluate_pairs
    from dreamprune_cli.engine.joint import JointTrainer
    from dreamprune_cli.prune.unstructured.plan import prune_model
    from dreamprune_cli.models.loading import load_model
    from dreamprune_cli.settings import resolve_settings

    settings = resolve_settings({"model": "ffa"}, env={}).settings  # the FFA preset
    device = torch.device("cpu")
    precision = resolve_precision(device)
    teacher = load_model("ffa")
    student = prune_model(teacher, settings.prune.flops_target, "lamp").student
    schedule = DreamSchedule.from_values(settings.dream.model_dump())
    generator = torch.Generator().manual_seed(0)
    dreamer = Dreamer(teacher.adapter(), make_clean_source(None), schedule, generator, device,
                      precision)
    distiller = Distiller(student.adapter(), settings.distill.student_lr,
                          settings.distill.lambda_kd, device, precision)
    trainer = JointTrainer(dreamer, distiller, settings.dream.round_steps, generator)
    trainer.run(2)  # warm-up
    step_times: list[float] = []
    begin = time.perf_counter()
    while len(step_times) < max_steps and (len(step_times) < 3
                                           or time.perf_counter() - begin < max_seconds):
        tick = time.perf_counter()
        trainer.run(trainer.step + 1)
        step_times.append(time.perf_counter() - tick)
    pairs = pair_folders(*synthetic_test_set("dehaze"))
    adapter = teacher.adapter()
    evaluate_pairs(adapter, pairs[:1], "rgb", 0, device)  # warm-up
    tick = time.perf_counter()
    evaluate_pairs(adapter, pairs, "rgb", 0, device)
    return {"threads": threads, "step_s": statistics.median(step_times),
            "steps_timed": len(step_times), "evaluate_s": time.perf_counter() - tick,
            "eval_images": len(pairs)}


@contextmanager
def competing(busy: bool) -> Iterator[None]:
    """One Python busy loop beside the measurement when ``busy``."""
    if not busy:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(1.0)
        yield
    finally:
        proc.terminate()
        proc.wait()


def run_worker(threads: int, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, __file__, "--worker", "--threads", str(threads),
                           "--max-seconds", str(args.max_seconds), "--max-steps",
                           str(args.max_steps)], capture_output=True, text=True, env=env,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_pipeline(busy: bool) -> dict[str, Any]:
    """The README's default pipeline command, default threads; wall seconds and its JSON."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    with tempfile.TemporaryDirectory() as tmp, competing(busy):
        load = load_1min()
        tick = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "dreamprune_cli", "pipeline", "--model",
                               "ffa", "--flops-target", "0.58", "--out", f"{tmp}/run",
                               "--json"], capture_output=True, text=True, env=env, check=True)
        seconds = time.perf_counter() - tick
    summary = json.loads(proc.stdout)
    threads_line = next((line for line in proc.stderr.splitlines() if "CPU thread" in line), "")
    return {"busy": busy, "seconds": seconds, "load_before": load,
            "seconds_per_step": summary["seconds_per_step"],
            "psnr_student_minus_teacher": summary["psnr_student_minus_teacher"],
            "threads_log": threads_line.strip()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=20.0,
                        help="stop timing joint steps after this long (at least 3 steps)")
    parser.add_argument("--max-steps", type=int, default=40)
    parser.add_argument("--pipeline", action="store_true",
                        help="also time the README's default pipeline idle and busy")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.threads, args.max_seconds, args.max_steps)))
        return

    rows: list[dict[str, Any]] = []
    for rep in range(args.reps):
        for busy in (False, True):
            for threads in (1, 2):
                with competing(busy):
                    load = load_1min()
                    record = run_worker(threads, args)
                rows.append({**record, "busy": busy, "rep": rep, "load_before": load})
                print(f"rep {rep} busy={busy} threads={threads}: {record['step_s']:.3f} s/step, "
                      f"evaluate {record['evaluate_s']:.2f} s (load {load:.2f})", flush=True)

    def median(key: str, busy: bool, threads: int) -> float:
        return statistics.median(r[key] for r in rows
                                 if r["busy"] == busy and r["threads"] == threads)

    table = ["| competing busy processes | threads | joint step (s) | evaluation, 12 images (s) "
             "| step vs idle 1 thread | evaluation vs idle 1 thread |",
             "|---|---|---|---|---|---|"]
    base_step, base_eval = median("step_s", False, 1), median("evaluate_s", False, 1)
    for busy in (False, True):
        for threads in (1, 2):
            step, evaluation = median("step_s", busy, threads), median("evaluate_s", busy, threads)
            table.append(f"| {int(busy)} | {threads} | {step:.3f} | {evaluation:.2f} | "
                         f"{step / base_step:.2f} | {evaluation / base_eval:.2f} |")
    pipelines = []
    if args.pipeline:
        for busy in (False, True):
            pipelines.append(run_pipeline(busy))
            print(f"pipeline busy={busy}: {pipelines[-1]['seconds']:.0f} s "
                  f"({pipelines[-1]['threads_log']})", flush=True)
        idle, loaded = pipelines
        table += ["", "| README pipeline, default threads | wall (s) | s/joint step | load before "
                      "| threads chosen |", "|---|---|---|---|---|"]
        for run in pipelines:
            table.append(f"| {'1 busy process' if run['busy'] else 'idle'} | "
                         f"{run['seconds']:.0f} | {run['seconds_per_step']:.3f} | "
                         f"{run['load_before']:.2f} | {run['threads_log']} |")
        table.append(f"\nbusy / idle wall time: {loaded['seconds'] / idle['seconds']:.2f}")
    print("\n".join(table))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "threads.json").write_text(json.dumps({
        "rows": rows, "pipelines": pipelines, "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "uptime_after": load_average()}, indent=2))


if __name__ == "__main__":
    main()
