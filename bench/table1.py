"""The paper's Table 1 in miniature, on the bundled teachers, plus the L_orth ablation.

For each teacher (ffa on synthetic haze, hinet and mprnet on synthetic rain streaks) and each
MAC target F: PSNR/SSIM on the teacher's synthetic test set of

* the teacher;
* every allocator (uniform, global, erk, lamp, adaptive) without distillation, and after the
  same number of joint dream + distill steps;
* two references with the adaptive masks and the same steps and learning rate: distillation
  on plain uniform-noise inputs (no dreaming), and on synthetic degraded images (the
  data-driven upper bound; the teacher's outputs are the targets in every case);
* the L_orth ablation (adaptive, lambda_orth 0 vs the default): the diversity figure (mean
  pairwise cosine of the dreams' penultimate Gram representations) and the PSNR.

Results go to ``bench/results/table1_<model>.json``; ``--markdown`` prints the section of
``docs/RESULTS.md`` from all result files, to paste.

Usage::

    python bench/table1.py --model ffa [--targets 0.58 0.40] [--steps 600] [--threads 1]
    python bench/table1.py --markdown
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.data.pairs import pair_folders
from dreamprune_cli.data.synthetic import degrade_batch, synthetic_test_set
from dreamprune_cli.engine.distill import Distiller
from dreamprune_cli.engine.dream import DreamSchedule, dream_images
from dreamprune_cli.engine.evaluate import evaluate_pairs
from dreamprune_cli.engine.runtime import resolve_precision
from dreamprune_cli.engine.training import joint_trainer
from dreamprune_cli.models.loading import LoadedModel, load_model
from dreamprune_cli.prune import ALLOCATORS
from dreamprune_cli.prune.unstructured.plan import prune_model
from dreamprune_cli.runkit.context import generator as seeded
from dreamprune_cli.settings import resolve_settings

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CPU = torch.device("cpu")


def score(model: torch.nn.Module, pairs: list, space: str) -> dict[str, float]:
    result = evaluate_pairs(model, pairs, space, 0, CPU)
    return {"psnr": result.psnr, "ssim": result.ssim}


def distill_on(inputs: Callable[[torch.Generator], torch.Tensor], teacher: LoadedModel,
               student: LoadedModel, steps: int, lr: float, seed: int) -> float:
    """Distill on inputs drawn each step by ``inputs`` (no dreaming); returns seconds."""
    generator = seeded(seed)
    adapter = teacher.adapter().eval()
    distiller = Distiller(student.adapter(), lr, 1.0, CPU, resolve_precision(CPU))
    start = time.perf_counter()
    for _ in range(steps):
        x = inputs(generator)
        with torch.no_grad():
            target = adapter(x)
        distiller.step(x, target)
    return time.perf_counter() - start


def dream_distill(teacher: LoadedModel, student: LoadedModel, steps: int, lr: float,
                  schedule: DreamSchedule, seed: int, round_steps: int) -> float:
    """The pipeline's joint loop (:func:`dreamprune_cli.engine.training.joint_trainer`) on
    ``student``; returns seconds."""
    trainer = joint_trainer(teacher.adapter(), student.adapter(), make_clean_source(None),
                            schedule, round_steps, lr, 1.0, seeded(seed), CPU,
                            resolve_precision(CPU))
    start = time.perf_counter()
    trainer.run(steps)
    return time.perf_counter() - start


def run_model(name: str, targets: list[float], steps: int, lr: float, batch: int, size: int,
              seed: int, distill_allocators: list[str], ablation_targets: list[float],
              round_steps: int | None = None) -> dict[str, Any]:
    teacher = load_model(name)
    info = teacher.info
    preset = resolve_settings({"model": name}, env={}).settings  # as the pipeline would use
    if round_steps is None:
        round_steps = preset.dream.round_steps
    min_keep = preset.prune.min_keep
    schedule = DreamSchedule.from_values({**preset.dream.model_dump(), "batch_size": batch,
                                          "size": size})
    space = info.metric_space
    pairs = pair_folders(*synthetic_test_set(info.task))
    out: dict[str, Any] = {"model": name, "task": info.task, "metric_space": space,
                           "steps": steps, "student_lr": lr, "batch": batch, "size": size,
                           "round_steps": round_steps,
                           "min_keep": min_keep, "lambda_orth": schedule.lambda_orth,
                           "lambda_tv": schedule.lambda_tv, "lambda_far": schedule.lambda_far,
                           "eval_images": len(pairs), "threads": torch.get_num_threads(),
                           "machine": platform.machine(), "torch": torch.__version__,
                           "teacher": score(teacher.adapter(), pairs, space), "rows": []}
    calib = dream_images(teacher.adapter(), make_clean_source(None), batch, 50, schedule,
                         seeded(seed), CPU, resolve_precision(CPU))
    drift = None
    for target in targets:
        for allocator in ALLOCATORS:
            start = time.perf_counter()
            pruned = prune_model(teacher, target, allocator, flops_size=256,
                                 calibration=calib.dreams, drift=drift,
                                 min_keep=min_keep)
            if allocator == "adaptive":
                drift = pruned.drift
            prune_seconds = time.perf_counter() - start
            row = {"target": target, "allocator": allocator, "macs_ratio": pruned.macs_ratio,
                   "prune_seconds": prune_seconds,
                   "no_distill": score(pruned.student.adapter(), pairs, space)}
            if allocator in distill_allocators:
                row["distill_seconds"] = dream_distill(teacher, pruned.student, steps, lr,
                                                       schedule, seed, round_steps)
                row["dream_distill"] = score(pruned.student.adapter(), pairs, space)
            out["rows"].append(row)
            print(json.dumps(row), flush=True)
            if allocator == "adaptive":
                masks_source = row
        refs: dict[str, Any] = {"target": target}

        def adaptive_student() -> LoadedModel:
            """A fresh copy of the adaptive student (the drift curves are reused)."""
            return prune_model(teacher, target, "adaptive", flops_size=256, drift=drift,
                               min_keep=min_keep).student

        noise = adaptive_student()
        refs["noise_seconds"] = distill_on(
            lambda g: torch.rand((batch, 3, size, size), generator=g), teacher, noise,
            steps, lr, seed)
        refs["noise_distill"] = score(noise.adapter(), pairs, space)
        source = make_clean_source(None)
        real = adaptive_student()
        refs["real_seconds"] = distill_on(
            lambda g: degrade_batch(info.task, source.sample(batch, size, g), g)[0],
            teacher, real, steps, lr, seed)
        refs["real_distill"] = score(real.adapter(), pairs, space)
        ablations: list[tuple[str, DreamSchedule]] = []
        if target in ablation_targets:
            ablations.append(("no_orth", dataclasses.replace(schedule, lambda_orth=0.0)))
        if schedule.lambda_tv > 0 or schedule.lambda_far > 0:  # the paper's objective alone
            ablations.append(("no_terms",
                              dataclasses.replace(schedule, lambda_tv=0.0, lambda_far=0.0)))
        for key, ablated in ablations:
            ablation_student = adaptive_student()
            refs[f"{key}_seconds"] = dream_distill(teacher, ablation_student, steps, lr,
                                                   ablated, seed, round_steps)
            refs[f"{key}_distill"] = score(ablation_student.adapter(), pairs, space)
        if "dream_distill" in masks_source:  # adaptive among --distill-allocators
            refs["adaptive_dream_distill"] = masks_source["dream_distill"]
        out.setdefault("references", []).append(refs)
        print(json.dumps(refs), flush=True)
    diversity = {}
    for lam in (0.0, 0.05):
        dreams = dream_images(teacher.adapter(), make_clean_source(None), 16, 100,
                              dataclasses.replace(schedule, lambda_orth=lam),
                              seeded(seed), CPU, resolve_precision(CPU))
        diversity[str(lam)] = {"mean_cosine": dreams.diversity,
                               "final_dream_loss": dreams.final_dream_loss}
    out["diversity"] = diversity
    return out


def markdown() -> str:
    lines = ["## Table 1 in miniature (bundled teachers)", ""]
    for path in sorted(RESULTS.glob("table1_*.json")):
        data = json.loads(path.read_text())
        t = data["teacher"]
        lines += [f"### {data['model']} ({data['task']}, {data['metric_space'].upper()}, "
                  f"{data['eval_images']} synthetic test images)", "",
                  f"Teacher: PSNR {t['psnr']:.2f} dB, SSIM {t['ssim']:.4f}. Each distillation: "
                  f"{data['steps']} steps, batch {data['batch']} x {data['size']} px, student "
                  f"lr {data['student_lr']}, new dreams every {data.get('round_steps', 50)} "
                  f"steps, adaptive min keep {data.get('min_keep', 0.0)}, "
                  f"lambda_orth {data.get('lambda_orth', 0.05)}, "
                  f"lambda_tv {data.get('lambda_tv', 0.0)}, "
                  f"lambda_far {data.get('lambda_far', 0.0)}, "
                  f"{data['threads']} thread(s), "
                  f"{data.get('seconds', 0) / 60:.0f} min in all.", "",
                  f"Command: `{data.get('command', 'python bench/table1.py')}`", "",
                  *(["**Partial**: the run was stopped at the session's time limit; its rows "
                     "were recovered from the log, and what is missing was not run.", ""]
                    if data.get("partial") else []),
                  "| F | allocator | MACs kept | PSNR no distill | SSIM | PSNR dream+distill | "
                  "SSIM | prune s | distill s |", "|---|---|---|---|---|---|---|---|---|"]
        for r in data["rows"]:
            dd = r.get("dream_distill")
            distilled = (f"{dd['psnr']:.2f} | {dd['ssim']:.4f} | {r['prune_seconds']:.1f} | "
                         f"{r['distill_seconds']:.0f}") if dd else \
                f"not run | | {r['prune_seconds']:.1f} |"
            lines.append(
                f"| {r['target']} | {r['allocator']} | {r['macs_ratio']:.4f} | "
                f"{r['no_distill']['psnr']:.2f} | {r['no_distill']['ssim']:.4f} | "
                f"{distilled} |")
        lines += ["", "| F | adaptive masks, distilled on | PSNR | SSIM | seconds |",
                  "|---|---|---|---|---|"]
        for r in data.get("references", []):
            for key, label in (("adaptive_dream_distill", "dreams (the preset's objective)"),
                               ("no_orth_distill", "dreams, lambda_orth 0"),
                               ("no_terms_distill", "dreams, lambda_tv = lambda_far = 0 "
                                                    "(the paper's objective)"),
                               ("noise_distill", "plain noise"),
                               ("real_distill", "synthetic degraded images (upper bound)")):
                if key not in r:
                    continue
                seconds = r.get(key.replace("_distill", "_seconds"), "")
                seconds = f"{seconds:.0f}" if isinstance(seconds, float) else ""
                lines.append(f"| {r['target']} | {label} | {r[key]['psnr']:.2f} | "
                             f"{r[key]['ssim']:.4f} | {seconds} |")
        d = data.get("diversity", {})
        if d:
            lines += ["", "Diversity of 16 dreams (100 steps each batch): mean pairwise cosine "
                      "of the penultimate Gram representations (1 = identical): "
                      + ", ".join(f"lambda_orth {k}: {v['mean_cosine']:.4f}"
                                  for k, v in d.items()), ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["ffa", "hinet", "mprnet"])
    parser.add_argument("--targets", type=float, nargs="+", default=[0.58, 0.40])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--student-lr", type=float, default=1e-4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--distill-allocators", nargs="+", default=list(ALLOCATORS),
                        help="allocators whose masks are also dreamed + distilled")
    parser.add_argument("--ablation-targets", type=float, nargs="+", default=None,
                        help="targets of the lambda_orth 0 run (default: all)")
    parser.add_argument("--round-steps", type=int, default=None,
                        help="joint steps per round of new dreams (default: the model's preset)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.markdown:
        print(markdown())
        return
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = run_model(args.model, args.targets, args.steps, args.student_lr, args.batch,
                     args.size, args.seed, args.distill_allocators,
                     args.ablation_targets if args.ablation_targets is not None else args.targets,
                     args.round_steps)
    data["command"] = "python bench/table1.py " + " ".join(sys.argv[1:])
    data["seconds"] = time.perf_counter() - start
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"table1_{args.model}.json").write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
