"""Several processes on the CPU: joint-step time, scaling efficiency, and what a global L_orth
changes against a per-rank one.

Part 1 (speed): the engine's joint step (dream + distill, L_orth on) of the bundled teacher
and a LAMP student at 0.58 of its MACs, in 1 process and in N processes (Gloo, one thread
each), at the same global batch (strong scaling: each rank dreams batch / N) and at the
same per-rank batch (weak scaling: the global batch grows N times). Reported: median ms per
joint step over blocks of steps (the slowest rank's), images per second, and the scaling
efficiency ``t_1 / (N t_N)`` (strong) or ``t_1 / t_N`` (weak).

Part 2 (L_orth scope): from the same noise and clean targets, N ranks dream one round either
with L_orth over the global batch (features gathered with their gradients; dreamprune's
choice) or with L_orth over each rank's own batch (what the ranks would do without the
gather). Reported on the whole global batch: the mean pairwise cosine similarity of the
teacher's penultimate representations (diversity: lower is more diverse), split into pairs
within a rank and pairs across ranks, and the final L_dream.

Usage::

    OMP_NUM_THREADS=1 python bench/distributed.py [--model ffa] [--batch 8] [--size 64]
        [--steps 6] [--blocks 3] [--world 2] [--dream-steps 60] [--seeds 3]

Writes bench/results/distributed.json and prints two tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.engine.runtime import resolve_precision
from dreamprune_cli.engine.distill import Distiller
from dreamprune_cli.engine.distributed import RankSync, rank_seed, spawn_local
from dreamprune_cli.engine.dream import Dreamer, DreamSchedule, teacher_features
from dreamprune_cli.engine.joint import JointTrainer
from dreamprune_cli.engine.losses import cosine_matrix
from dreamprune_cli.prune.unstructured.plan import prune_model
from dreamprune_cli.models.loading import load_model

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchkit beside it
from benchkit import uptime  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
CPU = torch.device("cpu")


# ----------------------------------------------------------------------------- speed
def joint_body(sync: RankSync | None, model: str, batch: int, size: int, steps: int,
               blocks: int, out: Path) -> None:
    """Time ``blocks`` blocks of ``steps`` joint steps (after one warm-up block)."""
    torch.set_num_threads(1)
    teacher = load_model(model)
    student = prune_model(teacher, 0.58, "lamp", flops_size=size).student
    schedule = DreamSchedule(batch_size=batch, size=size)
    generator = torch.Generator().manual_seed(rank_seed(0, sync))
    precision = resolve_precision(CPU)
    dreamer = Dreamer(teacher.adapter(), make_clean_source(None), schedule, generator, CPU,
                      precision, sync)
    distiller = Distiller(student.adapter(), 1e-4, 1.0, CPU, precision, sync)
    trainer = JointTrainer(dreamer, distiller, round_steps=400, generator=generator, sync=sync)
    done = steps
    trainer.run(done)  # warm-up: allocations, DDP's first (graph-recording) step
    times = []
    for _ in range(blocks):
        if sync is not None:
            sync.barrier()
        start = time.perf_counter()
        done += steps
        trainer.run(done)
        elapsed = (time.perf_counter() - start) / steps
        times.append(max(sync.all_gather(elapsed)) if sync is not None else elapsed)
    if sync is None or sync.is_writer:
        out.write_text(json.dumps(times))


def time_joint(model: str, global_batch: int, world: int, size: int, steps: int,
               blocks: int) -> float:
    """Median seconds per joint step of ``world`` processes dreaming ``global_batch``."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "times.json"
        if world == 1:
            joint_body(None, model, global_batch, size, steps, blocks, out)
        else:
            spawn_local(joint_body, world, model, global_batch, size, steps, blocks, out)
        return statistics.median(json.loads(out.read_text()))


# ----------------------------------------------------------------------------- L_orth scope
def orth_body(sync: RankSync, model: str, batch: int, size: int, steps: int, seed: int,
              scope: str, out: Path) -> None:
    """One round of ``steps`` dreaming steps with L_orth over the ``global`` or ``rank``
    batch; rank 0 writes the diversity of the whole global batch."""
    torch.set_num_threads(1)
    teacher = load_model(model).adapter()
    schedule = DreamSchedule(batch_size=batch, size=size)
    generator = torch.Generator().manual_seed(rank_seed(seed, sync))
    if scope == "global":
        dreamer = Dreamer(teacher, make_clean_source(None), schedule, generator, CPU,
                          resolve_precision(CPU), sync)
    else:  # each rank alone with its share of the batch: L_orth within the rank only
        share = DreamSchedule(batch_size=batch // sync.world_size, size=size)
        dreamer = Dreamer(teacher, make_clean_source(None), share, generator, CPU,
                          resolve_precision(CPU))
    dreamer.new_round()
    last = None
    for _ in range(steps):
        last = dreamer.step()
    assert last is not None
    dreams = dreamer.dreams.detach()
    _, reps = teacher_features(teacher, dreams, CPU, schedule.representation)
    assert reps is not None
    gathered = sync.all_gather({"reps": reps, "dream": last.dream_loss})
    if not sync.is_writer:
        return
    everything = torch.cat([part["reps"] for part in gathered])
    cosine = cosine_matrix(everything.float(), center=False)
    owner = torch.arange(sync.world_size).repeat_interleave(batch // sync.world_size)
    same = owner[:, None] == owner[None, :]
    off = ~torch.eye(batch, dtype=torch.bool)
    out.write_text(json.dumps({
        "mean_cosine": float(cosine[off].mean()),
        "within_rank_cosine": float(cosine[off & same].mean()),
        "across_rank_cosine": float(cosine[~same].mean()),
        "dream_loss": statistics.fmean(part["dream"] for part in gathered)}))


def orth_scope(model: str, batch: int, size: int, steps: int, world: int, seed: int,
               scope: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "orth.json"
        spawn_local(orth_body, world, model, batch, size, steps, seed, scope, out)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ffa")
    parser.add_argument("--batch", type=int, default=8, help="global batch of dreams")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6, help="joint steps per timed block")
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--world", type=int, default=2)
    parser.add_argument("--dream-steps", type=int, default=60)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = uptime()
    speed: list[dict[str, Any]] = []
    t1 = time_joint(args.model, args.batch, 1, args.size, args.steps, args.blocks)
    speed.append({"processes": 1, "global_batch": args.batch, "ms_per_step": t1 * 1e3,
                  "images_per_s": args.batch / t1, "efficiency": 1.0})
    strong = time_joint(args.model, args.batch, args.world, args.size, args.steps, args.blocks)
    speed.append({"processes": args.world, "global_batch": args.batch,
                  "ms_per_step": strong * 1e3, "images_per_s": args.batch / strong,
                  "efficiency": t1 / (args.world * strong), "scaling": "strong"})
    weak_batch = args.batch * args.world
    weak = time_joint(args.model, weak_batch, args.world, args.size, args.steps, args.blocks)
    speed.append({"processes": args.world, "global_batch": weak_batch,
                  "ms_per_step": weak * 1e3, "images_per_s": weak_batch / weak,
                  "efficiency": t1 / weak, "scaling": "weak"})
    load_mid = uptime()
    scopes: list[dict[str, Any]] = []
    for seed in range(args.seeds):
        for scope in ("global", "rank"):
            scopes.append({"seed": seed, "scope": scope,
                           **orth_scope(args.model, args.batch, args.size, args.dream_steps,
                                        args.world, seed, scope)})
    load_after = uptime()
    print(f"joint step, {args.model}, {args.size}px, CPU, 1 thread per process")
    print("| processes | global batch | scaling | ms/step | images/s | efficiency |")
    print("|---|---|---|---|---|---|")
    for row in speed:
        print(f"| {row['processes']} | {row['global_batch']} | {row.get('scaling', '-')} | "
              f"{row['ms_per_step']:.0f} | {row['images_per_s']:.1f} | "
              f"{row['efficiency']:.2f} |")
    print(f"\nL_orth scope, {args.world} ranks, global batch {args.batch}, "
          f"{args.dream_steps} dreaming steps")
    print("| seed | L_orth over | mean cos | within-rank cos | across-rank cos | L_dream |")
    print("|---|---|---|---|---|---|")
    for row in scopes:
        print(f"| {row['seed']} | {row['scope']} | {row['mean_cosine']:.4f} | "
              f"{row['within_rank_cosine']:.4f} | {row['across_rank_cosine']:.4f} | "
              f"{row['dream_loss']:.4f} |")
    RESULTS.mkdir(exist_ok=True)
    record = {"model": args.model, "size": args.size, "batch": args.batch,
              "world": args.world, "steps_per_block": args.steps, "blocks": args.blocks,
              "dream_steps": args.dream_steps, "speed": speed, "orth_scope": scopes,
              "uptime": [load_before, load_mid, load_after], "torch": torch.__version__,
              "machine": platform.machine()}
    (RESULTS / "distributed.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
