"""Speed of the engine's joint step against a minimal hand-written PyTorch loop.

Both do, per step, the same work: a teacher forward with the penultimate hook and L_orth on
a batch of dreams, a backward to the dreams and an Adam step on them, then a student forward,
an L1 backward and an Adam step on the masked student. Measured in one process, alternating
blocks of steps so that machine load hits both alike; reports the median ms per step.

Usage::

    python bench/joint_speed.py [--model ffa] [--weights FILE] [--batch 8] [--size 64] [--steps 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.engine.runtime import resolve_device, resolve_precision
from dreamprune_cli.engine.distill import Distiller
from dreamprune_cli.engine.dream import Dreamer, DreamSchedule
from dreamprune_cli.engine.joint import JointTrainer
from dreamprune_cli.engine.losses import orth_loss
from dreamprune_cli.prune.unstructured.plan import prune_model
from dreamprune_cli.models.loading import load_model

RESULTS = Path(__file__).resolve().parent / "results"


def minimal_loop(teacher: torch.nn.Module, student: torch.nn.Module, layer: torch.nn.Module,
                 clean: torch.Tensor, steps: int, lambda_orth: float) -> float:
    """The same forwards and backwards written plainly; returns seconds per step."""
    x = torch.rand_like(clean).requires_grad_()
    dream_opt = torch.optim.Adam([x], lr=5e-2)
    student_opt = torch.optim.Adam(student.parameters(), lr=1e-4)
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_pre_hook(lambda m, a: captured.append(a[0]))
    start = time.perf_counter()
    for _ in range(steps):
        captured.clear()
        out = teacher(x)
        loss = F.l1_loss(out, clean) + lambda_orth * orth_loss(captured[-1])
        dream_opt.zero_grad()
        loss.backward()
        dream_opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
        s_loss = F.l1_loss(student(x.detach()), out.detach())
        student_opt.zero_grad()
        s_loss.backward()
        student_opt.step()
        float(loss.detach()), float(s_loss.detach())
    handle.remove()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ffa")
    parser.add_argument("--weights", default=None, help="checkpoint (default: the bundled "
                        "teacher), e.g. the authors' PReNet6 net_latest.pth")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="steps per block")
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision = resolve_precision(device)
    teacher = load_model(args.model, weights=args.weights)
    pruned = prune_model(teacher, 0.58, "lamp", flops_size=args.size).student
    schedule = DreamSchedule(batch_size=args.batch, size=args.size)
    generator = torch.Generator().manual_seed(0)
    dreamer = Dreamer(teacher.adapter().to(device), make_clean_source(None), schedule,
                      generator, device, precision)
    distiller = Distiller(pruned.adapter().to(device), 1e-4, 1.0, device, precision)
    trainer = JointTrainer(dreamer, distiller, round_steps=10**9, generator=generator)
    plain_teacher = teacher.adapter().to(device)
    plain_student = copy.deepcopy(pruned.adapter()).to(device)
    layer = dict(plain_teacher.network.named_modules())[teacher.info.penultimate_layer]
    clean = make_clean_source(None).sample(args.batch, args.size, generator).to(device)
    engine_times, minimal_times = [], []
    trainer.run(3)  # warm-up both
    minimal_loop(plain_teacher, plain_student, layer, clean, 3, 0.05)
    for _ in range(args.blocks):
        start, done = time.perf_counter(), trainer.step
        trainer.run(done + args.steps)
        engine_times.append((time.perf_counter() - start) / args.steps)
        minimal_times.append(minimal_loop(plain_teacher, plain_student, layer, clean,
                                          args.steps, 0.05))
    engine, minimal = statistics.median(engine_times), statistics.median(minimal_times)
    result = {"model": args.model, "batch": args.batch, "size": args.size,
              "device": str(device), "threads": args.threads,
              "engine_ms_per_step": engine * 1000, "minimal_ms_per_step": minimal * 1000,
              "ratio": engine / minimal, "machine": platform.processor() or platform.machine()}
    print(f"| model | batch x size | engine ms/step | minimal loop ms/step | ratio |\n"
          f"|---|---|---|---|---|\n| {args.model} | {args.batch} x {args.size}px | "
          f"{engine * 1000:.1f} | {minimal * 1000:.1f} | {engine / minimal:.3f} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"joint_speed_{args.model}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
