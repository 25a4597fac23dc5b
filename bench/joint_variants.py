"""One dream + distill run with a chosen variant of the schedule, scored on the test set.

The study behind the pipeline's defaults (docs/notebook/sessions-1-8.md, "What the joint
loop's schedule changes"): round length, dream initialisation, the dreams' image terms (total variation,
coarse distance), the dreams' and the student's learning rates
(constant or cosine-decayed), the adaptive allocator's calibration images, and the inputs the
student is distilled on (dreams, plain noise, synthetic degraded images). Each run prints one
JSON line and appends it to ``bench/results/joint_variants.jsonl``.

Usage::

    OMP_NUM_THREADS=1 python bench/joint_variants.py --model ffa --target 0.58 \\
        [--round-steps 200] [--calibration dreams] [--init uniform] [--seed 0] \\
        [--eval-seed 7 --eval-count 48]   # score on held-out synthetic images
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.data.pairs import pair_folders
from dreamprune_cli.data.synthetic import (TEST_SET_COUNT, TEST_SET_SEED, degrade_batch,
                                           synthetic_test_set)
from dreamprune_cli.engine.distill import Distiller
from dreamprune_cli.engine.dream import DreamSchedule, dream_images
from dreamprune_cli.engine.evaluate import evaluate_pairs
from dreamprune_cli.engine.runtime import resolve_precision
from dreamprune_cli.engine.training import joint_trainer
from dreamprune_cli.models.loading import load_model
from dreamprune_cli.prune.unstructured.plan import prune_model
from dreamprune_cli.runkit.context import generator as seeded
from dreamprune_cli.settings import resolve_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchkit beside it
from benchkit import append_row  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "joint_variants.jsonl"
CPU = torch.device("cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ffa", choices=["ffa", "hinet", "mprnet"])
    parser.add_argument("--target", type=float, default=0.58)
    parser.add_argument("--allocator", default="adaptive")
    parser.add_argument("--calibration", default="dreams", choices=["dreams", "synthetic"])
    parser.add_argument("--calibration-steps", type=int, default=50)
    parser.add_argument("--calibration-lr", type=float, default=5e-2)
    parser.add_argument("--min-keep", type=float, default=None, help="default: the preset's")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--round-steps", type=int, default=None,
                        help="default: the model's preset")
    parser.add_argument("--student-lr", type=float, default=1e-4)
    parser.add_argument("--lr-schedule", default="const", choices=["const", "cos"])
    parser.add_argument("--noise-lr", type=float, default=5e-2)
    parser.add_argument("--lambda-orth", type=float, default=0.05)
    parser.add_argument("--lambda-tv", type=float, default=None, help="default: the preset's")
    parser.add_argument("--lambda-far", type=float, default=None, help="default: the preset's")
    parser.add_argument("--init", default="uniform", choices=["uniform", "gray", "smooth"])
    parser.add_argument("--inputs", default="dreams", choices=["dreams", "noise", "synthetic"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-seed", type=int, default=TEST_SET_SEED,
                        help="seed of the synthetic set scored (default: the test set's); "
                             "another seed is a held-out check of values tuned on the test set")
    parser.add_argument("--eval-count", type=int, default=TEST_SET_COUNT,
                        help="images in that set (default: the test set's)")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="also score the student every N steps (the 'curve' field)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    teacher = load_model(args.model)
    info = teacher.info
    preset = resolve_settings({"model": args.model}, env={}).settings
    if args.round_steps is None:
        args.round_steps = preset.dream.round_steps
    if args.min_keep is None:
        args.min_keep = preset.prune.min_keep
    if args.lambda_tv is None:
        args.lambda_tv = preset.dream.lambda_tv
    if args.lambda_far is None:
        args.lambda_far = preset.dream.lambda_far
    schedule = DreamSchedule.from_values({
        **preset.dream.model_dump(), "noise_lr": args.noise_lr, "lambda_orth": args.lambda_orth,
        "lambda_tv": args.lambda_tv, "lambda_far": args.lambda_far, "batch_size": 8, "size": 64,
        "init": args.init})
    pairs = pair_folders(*synthetic_test_set(info.task, count=args.eval_count,
                                             seed=args.eval_seed))
    precision = resolve_precision(CPU)

    def score(model: torch.nn.Module) -> tuple[float, float]:
        result = evaluate_pairs(model, pairs, info.metric_space, 0, CPU)
        return result.psnr, result.ssim

    calibration = None
    if args.allocator == "adaptive" and args.calibration == "dreams":
        calibration = dream_images(teacher.adapter(), make_clean_source(None), 8,
                                   args.calibration_steps,
                                   dataclasses.replace(schedule, noise_lr=args.calibration_lr,
                                                       init="uniform"),
                                   seeded(0), CPU, precision).dreams
    pruned = prune_model(teacher, args.target, args.allocator, calibration=calibration,
                         min_keep=args.min_keep)
    student = pruned.student
    pruned_psnr, _ = score(student.adapter())

    generator = seeded(args.seed)

    def cosine(step: int) -> float:
        return 0.5 * (1 + math.cos(math.pi * min(step, args.steps) / args.steps))

    lr_lambda = cosine if args.lr_schedule == "cos" else None
    dream_psnr = None
    every = args.eval_every or args.steps
    checkpoints = sorted({*range(every, args.steps + 1, every), args.steps})
    scores: list[tuple[float, float]] = []  # (PSNR, SSIM) of the student at each checkpoint
    if args.inputs == "dreams":
        trainer = joint_trainer(teacher.adapter(), student.adapter(), make_clean_source(None),
                                schedule, args.round_steps, args.student_lr, 1.0, generator,
                                CPU, precision, lr_lambda=lr_lambda)
        dreamer = trainer.dreamer
        for stop in checkpoints:  # run() continues from the trainer's step
            trainer.run(stop)
            scores.append(score(student.adapter()))
        with torch.no_grad():  # how far the last dreams are from their clean targets
            mse = (dreamer.dreams - dreamer.clean).pow(2).mean()
            dream_psnr = round(float(-10 * torch.log10(mse)), 2)
    else:
        distiller = Distiller(student.adapter(), args.student_lr, 1.0, CPU, precision,
                              lr_lambda=lr_lambda)
        adapter = teacher.adapter().eval()
        source = make_clean_source(None)
        for done in range(1, args.steps + 1):
            if args.inputs == "noise":
                x = torch.rand((8, 3, 64, 64), generator=generator)
            else:
                x = degrade_batch(info.task, source.sample(8, 64, generator), generator)[0]
            with torch.no_grad():
                target = adapter(x)
            distiller.step(x, target)
            if done in checkpoints:
                scores.append(score(student.adapter()))
    psnr, ssim = scores[-1]  # the last checkpoint is the end of the run
    curve = [round(p, 3) for p, _ in scores]
    row = dict(vars(args), teacher=round(score(teacher.adapter())[0], 3),
               pruned=round(pruned_psnr, 3), student=round(psnr, 3), ssim=round(ssim, 4),
               curve=curve, dream_psnr=dream_psnr,
               seconds=round(time.perf_counter() - start, 1),
               machine=platform.machine(), torch=torch.__version__)
    print(json.dumps(row), flush=True)
    append_row(row, RESULTS)


if __name__ == "__main__":
    main()
