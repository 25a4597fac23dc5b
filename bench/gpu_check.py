"""The GPU check: one prepared, short run for a session that is lent a GPU machine.

Three parts, each written to ``--out`` as soon as it is measured (a run cut short keeps
what it measured), then printed as markdown tables for docs/RESULTS.md:

1. **The joint step** (dream + distill, the engine's :class:`JointTrainer`, L_orth on) of
   the bundled FFA teacher and its LAMP student (unstructured, F = 0.58), at batch x size
   ``--joint-shapes`` (default 8x64, the preset, and 16x128), in four precisions: fp32,
   channels-last only, AMP only (bf16 where the GPU supports it, else fp16 with a grad
   scaler: :func:`dreamprune_cli.engine.runtime.resolve_precision`), and AMP + channels-last
   (the CLI's default on CUDA). Median ms per step over ``--blocks`` blocks of ``--steps``.
2. **Teacher / student latency for every granularity** (unstructured, channel, depth,
   depth+channel at ``--target``) of the zoo's full-size architectures with seeded random
   weights (``--variant tiny`` for a quick check), on 1x3x256x256 and a Rain100L-sized
   321x481 input, in fp32 and under autocast with channels-last: the median per-pair ratio
   of interleaved, CUDA-synchronised runs (:func:`dreamprune_cli.engine.latency.paired_latency`,
   what ``dreamprune pipeline`` reports) beside the MAC ratio. Students are made as
   ``bench/latency.py`` makes them (uniform allocator; depth chosen by drift on 64 px
   synthetic images), on the CPU, then moved to the device.
3. **NCCL with one GPU**: the engine's collectives (:class:`RankSync`: mean, stop signal,
   the differentiable row gather L_orth uses, DDP's gradient averaging, broadcast, gather,
   barrier) in an NCCL process group of one (Gloo on the CPU); then ``torchrun --standalone
   --nproc-per-node 1 -m dreamprune_cli pipeline --model ffa --steps N``: exit status, wall
   time, the student's scores from ``--json``. (A torchrun of one process starts no process
   group: dreamprune runs it as one process; NCCL refuses two ranks on one GPU.)

``--budget-s`` bounds part 2: rows not started when it runs out are recorded as skipped, so
the run fits a device lease (15 minutes of device time in all, start-up included).

Usage (on the device machine; ``$OUT`` comes back)::

    python bench/gpu_check.py --out "$OUT/gpu_check.json" --budget-s 300
    python bench/gpu_check.py --device cpu --variant tiny --steps 2 --blocks 1 \\
        --joint-shapes 2x32 --pipeline-steps 2 --out /tmp/gpu_check.json   # a CPU dry run
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency import (  # noqa: E402
    RAIN100L, ZOO, depth_student, input_shape, seeded_teacher, unstructured_student)

from dreamprune_cli.data.clean import make_clean_source  # noqa: E402
from dreamprune_cli.engine.distill import Distiller  # noqa: E402
from dreamprune_cli.engine.dream import Dreamer, DreamSchedule  # noqa: E402
from dreamprune_cli.engine.joint import JointTrainer  # noqa: E402
from dreamprune_cli.engine.latency import paired_latency  # noqa: E402
from dreamprune_cli.engine.runtime import Precision, resolve_device, resolve_precision  # noqa: E402
from dreamprune_cli.errors import UsageError  # noqa: E402
from dreamprune_cli.fileio import write_text_atomic  # noqa: E402
from dreamprune_cli.flops import count_costs  # noqa: E402
from dreamprune_cli.models.adapter import network_input_size  # noqa: E402
from dreamprune_cli.models.loading import load_model  # noqa: E402
from dreamprune_cli.prune.channel.plan import prune_channels  # noqa: E402
from dreamprune_cli.prune.unstructured.plan import prune_model  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
GRANULARITIES = ["unstructured", "channel", "depth", "depth+channel"]


def joint_precisions(device: torch.device) -> dict[str, Precision]:
    """The four training precisions compared in part 1 (all fp32 on the CPU)."""
    amp = resolve_precision(device, "auto", "off")
    return {"fp32": resolve_precision(device, "off", "off"),
            "channels-last": resolve_precision(device, "off", "on"),
            "amp": amp,
            "amp + channels-last": resolve_precision(device, "auto", "on")}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def joint_step_ms(teacher: Any, pruned: Any, device: torch.device, precision: Precision,
                  batch: int, size: int, steps: int, blocks: int) -> float:
    """Median ms per joint step of ``teacher`` and a fresh copy of ``pruned`` (its student).

    Three untimed warm-up steps first; each block of ``steps`` is bracketed by
    ``torch.cuda.synchronize`` on CUDA.
    """
    student = copy.deepcopy(pruned)  # trained in place: every precision starts alike
    generator = torch.Generator().manual_seed(0)
    dreamer = Dreamer(teacher.adapter().to(device), make_clean_source(None),
                      DreamSchedule(batch_size=batch, size=size), generator, device, precision)
    distiller = Distiller(student.adapter().to(device), 1e-4, 1.0, device, precision)
    trainer = JointTrainer(dreamer, distiller, round_steps=10**9, generator=generator)
    trainer.run(3)
    times = []
    for _ in range(blocks):
        _sync(device)
        start, done = time.perf_counter(), trainer.step
        trainer.run(done + steps)
        _sync(device)
        times.append((time.perf_counter() - start) / steps)
    return statistics.median(times) * 1000


@contextlib.contextmanager
def inference_precision(device: torch.device, amp: bool) -> Iterator[None]:
    """Autocast in the dtype :func:`resolve_precision` picks (bf16 or fp16), or nothing."""
    dtype = resolve_precision(device).autocast_dtype if amp else None
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def make_student(teacher: Any, granularity: str, target: float,
                 size: int) -> torch.nn.Module:
    """The bare student network of ``granularity`` at MAC fraction ``target`` (CPU).

    Raises:
        UsageError: a granularity the model cannot take at ``target`` (nothing removable,
            an unreachable target).
    """
    if granularity == "unstructured":
        return unstructured_student(teacher, target, size, "uniform")
    if granularity == "channel":
        return prune_channels(teacher, target, "uniform", flops_size=size).student.network.eval()
    options = argparse.Namespace(size=size, depth_calibration_size=64, allocator="uniform",
                                 channel_multiple=1)
    return depth_student(teacher, target, granularity, options)


def latency_rows(args: argparse.Namespace, device: torch.device, deadline: float,
                 record: dict[str, Any]) -> None:
    """Part 2: append one row per model, granularity, input and precision to ``record``."""
    rows = record["latency"]
    for name in args.models:
        teacher = seeded_teacher(name, args.variant)
        input_size = network_input_size(teacher.info, args.size)
        dense = count_costs(teacher.network, input_size).macs_dense
        network = teacher.network.to(device).eval()
        for granularity in GRANULARITIES:
            base = {"model": f"{name} ({args.variant})", "granularity": granularity,
                    "flops_target": args.target}
            if time.monotonic() > deadline:
                rows.append({**base, "skipped": "--budget-s spent"})
                continue
            try:
                student = make_student(teacher, granularity, args.target, args.size)
            except UsageError as exc:
                rows.append({**base, "skipped": str(exc)})
                continue
            macs = count_costs(student, input_size).macs
            student = student.to(device).eval()
            for spec in args.inputs:
                height, width = input_shape(spec, teacher.info.size_multiple)
                x = torch.rand(1, input_size[0], height, width,
                               generator=torch.Generator().manual_seed(0)).to(device)
                for amp in (False, True):
                    if amp:
                        x = x.contiguous(memory_format=torch.channels_last)
                        pair = (network.to(memory_format=torch.channels_last),
                                student.to(memory_format=torch.channels_last))
                    else:
                        pair = (network, student)
                    with inference_precision(device, amp):
                        timing = paired_latency(*pair, x, pairs=args.repeats, warmup=2)
                    rows.append({**base, "input": [height, width],
                                 "precision": "amp + channels-last" if amp else "fp32",
                                 "macs_ratio": macs / dense,
                                 "teacher_ms": timing.teacher_seconds * 1000,
                                 "student_ms": timing.student_seconds * 1000,
                                 "latency_ratio": timing.ratio})
                network.to(memory_format=torch.contiguous_format)
            write_record(args.out, record)
            del student
        network.cpu()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def torchrun_row(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Part 3, second: the pipeline under ``torchrun`` with one process on ``device`` (the launch
    path; a world of one starts no process group)."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc-per-node", "1", "-m", "dreamprune_cli", "--device", device.type,
                   "pipeline", "--model", "ffa", "--steps", str(args.pipeline_steps),
                   "--out", str(Path(folder) / "run"), "--json"]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        row: dict[str, Any] = {"command": " ".join(command[1:]), "returncode": done.returncode,
                               "wall_s": round(time.perf_counter() - start, 1),
                               "stderr_tail": done.stderr[-2000:]}
        try:
            row["result"] = json.loads(done.stdout)
        except json.JSONDecodeError:
            row["stdout_tail"] = done.stdout[-2000:]
    return row


def collectives_row(device: torch.device) -> dict[str, Any]:
    """Part 3, first: the engine's collectives (:class:`RankSync`) in a process group of one,
    NCCL on CUDA (Gloo on the CPU), in this process: a ``torchrun`` of one process starts
    no group (dreamprune runs it as a single process), and NCCL refuses two ranks on one
    GPU, so this is the NCCL path a one-GPU machine can check. Returns what each collective
    gave and the milliseconds it took."""
    import torch.distributed as dist

    from dreamprune_cli.engine.distributed import RankSync

    backend = "nccl" if device.type == "cuda" else "gloo"
    store = dist.HashStore()
    dist.init_process_group(backend, store=store, rank=0, world_size=1,
                            device_id=device if device.type == "cuda" else None)
    try:
        sync = RankSync(rank=0, world_size=1, local_rank=0, device=device)
        row: dict[str, Any] = {"backend": dist.get_backend()}
        start = time.perf_counter()
        row["mean"] = sync.mean(1.5, 2.5)
        row["first_signal"] = sync.first_signal(15)
        rows = torch.rand(4, 8, device=device, requires_grad=True)
        sync.gather_rows(rows).pow(2).sum().backward()
        row["gather_rows_grad_ok"] = bool(torch.allclose(rows.grad, 2 * rows.detach()))
        layer = sync.wrap(torch.nn.Conv2d(3, 3, 3, padding=1).to(device))
        layer(torch.rand(2, 3, 16, 16, device=device)).mean().backward()
        row["ddp_grad_finite"] = bool(all(torch.isfinite(p.grad).all()
                                          for p in layer.parameters()))
        row["broadcast"] = sync.broadcast({"step": 7})
        row["all_gather"] = sync.all_gather(torch.ones(2, device=device))[0].tolist()
        sync.barrier()
        _sync(device)
        row["ms"] = round((time.perf_counter() - start) * 1000, 1)
        return row
    finally:
        dist.destroy_process_group()


def write_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=1) + "\n", overwrite=True)


def print_tables(record: dict[str, Any]) -> None:
    print(f"\n{record['device_name']}, torch {record['torch']}, {record['date']}\n")
    print("| batch x size | precision | joint step (ms) | vs fp32 |\n|---|---|---|---|")
    for row in record["joint"]:
        fp32 = next(r["ms"] for r in record["joint"]
                    if r["shape"] == row["shape"] and r["precision"] == "fp32")
        print(f"| {row['shape']} | {row['precision']} | {row['ms']:.1f} | "
              f"{row['ms'] / fp32:.2f} |")
    print("\n| model | granularity | input | precision | MAC ratio | latency ratio | "
          "latency / MAC ratio | teacher ms |\n|---|---|---|---|---|---|---|---|")
    for row in record["latency"]:
        if "skipped" in row:
            print(f"| {row['model']} | {row['granularity']} | - | - | - | skipped: "
                  f"{row['skipped']} | - | - |")
            continue
        print(f"| {row['model']} | {row['granularity']} | {row['input'][0]}x{row['input'][1]}"
              f" | {row['precision']} | {row['macs_ratio']:.3f} | {row['latency_ratio']:.3f} | "
              f"{row['latency_ratio'] / row['macs_ratio']:.2f} | {row['teacher_ms']:.2f} |")
    print(f"\nthe engine's collectives in a group of one: {record['collectives']}")
    run = record.get("torchrun")
    if run:
        print(f"torchrun, 1 process: exit {run['returncode']}, {run['wall_s']} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--joint-shapes", nargs="*", default=["8x64", "16x128"],
                        help="BATCHxSIZE of the joint step")
    parser.add_argument("--steps", type=int, default=10, help="joint steps per timed block")
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--models", nargs="*", default=ZOO)
    parser.add_argument("--variant", default="official", choices=["official", "tiny"])
    parser.add_argument("--target", type=float, default=0.58)
    parser.add_argument("--size", type=int, default=256, help="MACs counted at this size")
    parser.add_argument("--inputs", nargs="*", default=["256", "rain100l"])
    parser.add_argument("--repeats", type=int, default=10, help="timed pairs per row")
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="seconds for part 2; later rows are recorded as skipped")
    parser.add_argument("--pipeline-steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json")
    args = parser.parse_args()
    device = resolve_device(args.device)
    if device.type == "cuda" and device.index is None:  # NCCL and barriers name the GPU
        device = torch.device("cuda", torch.cuda.current_device())
    record: dict[str, Any] = {
        "device": str(device), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__, "cpu_count": os.cpu_count(), "rain100l": RAIN100L,
        "joint": [], "latency": []}
    teacher = load_model("ffa")  # the bundled teacher and its LAMP student at F = 0.58
    pruned = prune_model(teacher, 0.58, "lamp").student
    for shape in args.joint_shapes:
        batch, size = (int(v) for v in shape.split("x"))
        for label, precision in joint_precisions(device).items():
            ms = joint_step_ms(teacher, pruned, device, precision, batch, size, args.steps,
                               args.blocks)
            record["joint"].append({"shape": shape, "precision": label, "ms": ms,
                                    "autocast": str(precision.autocast_dtype)})
            print(f"joint step {shape} {label}: {ms:.1f} ms", flush=True)
            write_record(args.out, record)
    latency_rows(args, device, time.monotonic() + args.budget_s, record)
    record["collectives"] = collectives_row(device)
    write_record(args.out, record)
    record["torchrun"] = torchrun_row(args, device)
    write_record(args.out, record)
    print_tables(record)


if __name__ == "__main__":
    main()
