"""Magnitude pruning without fine-tuning: every allocator at each MAC target, per teacher.

The baseline that dreaming + distillation must beat. For each bundled teacher (its tiny
architecture trained on dreamprune's synthetic degradations) and each target F: PSNR/SSIM on
the teacher's synthetic test set (``synthetic_test_set(task)``) of the teacher and of every
allocator's pruned student, with the MACs kept at 3x256x256 and the wall-clock time of each
allocation (the adaptive allocator's drift measurement is timed separately and added to its
first target). Each student is also written with ``write_prune_outputs`` and recounted
independently from ``student.safetensors`` (non-zero weights x output pixels, forward hooks,
no project code): the count must agree with ``report.json`` within 0.5%.

Channel rows (``--channel-allocators``, on ``--channel-models``): whole channels removed with
Torch-Pruning (``prune_channels``), the adaptive allocator's drift measured on the same
synthetic calibration images; each student is written, reloaded from ``student.safetensors``
alone, and its output on a test image must equal the pruned network's (round trip exact).
Their seconds include the library's tracing and, for ``adaptive``, the drift measurement.

Results go to ``bench/results/prune_no_finetune.json``; the markdown table replaces the
section between the ``prune_no_finetune`` markers in ``docs/RESULTS.md``.

Usage::

    python bench/prune_no_finetune.py                       # bundled teachers
    python bench/prune_no_finetune.py --random-tiny ffa     # untrained tiny models (a dry run)
    python bench/prune_no_finetune.py --targets 0.58 --allocators uniform lamp adaptive \
        --channel-allocators uniform lamp adaptive --models ffa hinet
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn

from dreamprune_cli.data.pairs import pair_folders
from dreamprune_cli.data.synthetic import synthetic_test_set
from dreamprune_cli.engine.evaluate import evaluate_pairs
from dreamprune_cli.prune.unstructured.plan import (ALLOCATORS, apply_allocation,
                                                    measure_plan_drift, plan_pruning)
from dreamprune_cli.prune.result import write_prune_outputs
from dreamprune_cli.models import build_model
from dreamprune_cli.models.loading import LoadedModel, load_model
from dreamprune_cli.models.teachers import bundled_teacher_path, bundled_teachers
from dreamprune_cli.data.calibration import synthetic_calibration
from dreamprune_cli.prune import CHANNEL_ALLOCATORS
from dreamprune_cli.prune.channel.drift import DEFAULT_CHANNEL_LEVELS
from dreamprune_cli.prune.channel.plan import prune_channels
from dreamprune_cli.prune.student import load_student

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchkit beside it
from benchkit import write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS_JSON = ROOT / "bench" / "results" / "prune_no_finetune.json"
RESULTS_MD = ROOT / "docs" / "RESULTS.md"
START, END = "<!-- prune_no_finetune:start -->", "<!-- prune_no_finetune:end -->"
CPU = torch.device("cpu")
TOLERANCE = 0.005


def independent_weight_macs(path: Path, model: str, config: dict[str, Any],
                            size: int) -> dict[str, int]:
    """Per conv/linear layer of the saved student: non-zero weights x output positions.

    Output pixels for a convolution, input pixels for a transposed one (each input pixel
    meets every weight once), rows for a linear layer; summed over calls.
    """
    network = build_model(model, **config).eval()
    network.load_state_dict(load_file(str(path)), strict=True)
    macs: dict[str, int] = {}
    handles = []
    for name, module in network.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            def hook(mod: nn.Module, args: tuple, out: torch.Tensor, key: str = name) -> None:
                nonzero = int(torch.count_nonzero(mod.weight))
                if isinstance(mod, nn.ConvTranspose2d):
                    pixels = args[0].shape[0] * args[0].shape[-2] * args[0].shape[-1]
                elif isinstance(mod, nn.Conv2d):
                    pixels = out.shape[0] * out.shape[-2] * out.shape[-1]
                else:
                    pixels = out.numel() // out.shape[-1]
                macs[key] = macs.get(key, 0) + nonzero * pixels
            handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        network(torch.zeros(1, 3, size, size))
    for handle in handles:
        handle.remove()
    return macs


def check_outputs(paths: dict[str, Path], loaded: LoadedModel, size: int) -> float:
    """Relative gap between the independent count and ``report.json``'s weight MACs."""
    report = json.loads(paths["report"].read_text())
    counted = independent_weight_macs(paths["student"], loaded.name, loaded.config, size)
    reported = {layer["name"]: layer["weight_macs_kept"] for layer in report["layers"]}
    total_counted = sum(counted[name] for name in reported)
    total_reported = sum(reported.values())
    gap = abs(total_counted - total_reported) / total_reported
    if gap > TOLERANCE:
        raise SystemExit(f"{loaded.name}: independent count {total_counted} vs report "
                         f"{total_reported} ({gap:.2%})")
    return gap


def check_channel_round_trip(paths: dict[str, Path], student: LoadedModel) -> float:
    """Max abs difference between the pruned network and its reload from the student file."""
    reloaded = load_student(paths["student"], student.name).adapter().eval()
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = float((reloaded(image) - student.adapter().eval()(image)).abs().max())
    if difference != 0.0:
        raise SystemExit(f"{student.name}: the reloaded channel student differs by "
                         f"{difference:.3g}")
    return difference


def channel_rows(loaded: LoadedModel, pairs: list, targets: list[float],
                 allocators: list[str], flops_size: int, calibration: torch.Tensor,
                 keep_levels: tuple[float, ...]) -> list[dict[str, Any]]:
    """One row per (channel allocator, target): PSNR/SSIM of the thinner student."""
    info = loaded.info
    rows = []
    for allocator in allocators:
        for target in targets:
            tick = time.perf_counter()
            result = prune_channels(loaded, target, allocator, flops_size,
                                    calibration=calibration, keep_levels=keep_levels)
            seconds = time.perf_counter() - tick
            scores = evaluate_pairs(result.student.adapter(), pairs, info.metric_space,
                                    info.crop_border, CPU)
            with tempfile.TemporaryDirectory() as tmp:
                paths = write_prune_outputs(result, Path(tmp) / "out")
                gap = check_channel_round_trip(paths, result.student)
            drift = result.details.get("drift")
            row = {"allocator": allocator, "granularity": "channel", "target": target,
                   "macs_ratio": result.macs_ratio, "psnr": scores.psnr, "ssim": scores.ssim,
                   "seconds": seconds, "round_trip_max_abs": gap,
                   "drift_seconds": drift["seconds"] if drift else None,
                   "params_after": result.params_after,
                   "within_tolerance": result.details["within_tolerance"],
                   "scalar": {result.scalar_name: result.scalar}}
            rows.append(row)
            print(f"  {allocator:8s} channel F={target:.2f}  MACs {result.macs_ratio:.4f}  "
                  f"PSNR {scores.psnr:6.2f}  SSIM {scores.ssim:.4f}  {seconds:6.1f} s",
                  flush=True)
    return rows


def run_model(loaded: LoadedModel, label: str, targets: list[float], allocators: list[str],
              flops_size: int, calibration_count: int, calibration_size: int,
              seed: int, channel_allocators: list[str] = (),
              keep_levels: tuple[float, ...] = DEFAULT_CHANNEL_LEVELS) -> dict[str, Any]:
    """Teacher and every (allocator, target) student on the teacher's synthetic test set."""
    info = loaded.info
    pairs = pair_folders(*synthetic_test_set(info.task))
    space, border = info.metric_space, info.crop_border
    teacher = evaluate_pairs(loaded.adapter(), pairs, space, border, CPU)
    print(f"{loaded.name} ({label}): teacher PSNR {teacher.psnr:.2f} dB on {len(pairs)} "
          f"{info.task} images", flush=True)
    tick = time.perf_counter()
    plan = plan_pruning(loaded, flops_size)
    plan_seconds = time.perf_counter() - tick
    rows = []
    drift_seconds = 0.0
    drift = None
    for allocator in allocators:
        for index, target in enumerate(targets):
            tick = time.perf_counter()
            if allocator == "adaptive" and drift is None:
                calibration = synthetic_calibration(info.task, calibration_count,
                                                    calibration_size, seed)
                drift = measure_plan_drift(plan, calibration)
                drift_seconds = time.perf_counter() - tick
            result = apply_allocation(plan, target, allocator, drift)
            seconds = time.perf_counter() - tick
            scores = evaluate_pairs(result.student.adapter(), pairs, space, border, CPU)
            with tempfile.TemporaryDirectory() as tmp:
                gap = check_outputs(write_prune_outputs(result, Path(tmp) / "out"), loaded,
                                    flops_size)
            row = {"allocator": allocator, "target": target, "macs_ratio": result.macs_ratio,
                   "psnr": scores.psnr, "ssim": scores.ssim, "seconds": seconds,
                   "count_gap": gap, "scalar": {result.scalar_name: result.scalar}}
            rows.append(row)
            print(f"  {allocator:8s} F={target:.2f}  MACs {result.macs_ratio:.4f}  "
                  f"PSNR {scores.psnr:6.2f}  SSIM {scores.ssim:.4f}  {seconds:6.1f} s  "
                  f"count gap {gap:.1e}", flush=True)
    if channel_allocators:
        calibration = synthetic_calibration(info.task, calibration_count, calibration_size,
                                            seed)
        rows += channel_rows(loaded, pairs, targets, list(channel_allocators), flops_size,
                             calibration, keep_levels)
    weights = (hashlib.sha256(loaded.weights.read_bytes()).hexdigest()[:12]
               if loaded.weights is not None else "random init")
    return {"model": loaded.name, "label": label, "weights": weights, "task": info.task,
            "metric_space": space,
            "eval_images": len(pairs), "teacher": {"psnr": teacher.psnr, "ssim": teacher.ssim},
            "macs_dense": plan.budget.dense_macs, "pruned_layers": len(plan.names),
            "excluded_layers": plan.dense_names, "plan_seconds": plan_seconds,
            "drift_seconds": drift_seconds,
            "drift_images": [calibration_count, calibration_size], "rows": rows}


def markdown(data: dict[str, Any]) -> str:
    """The RESULTS.md section: one table per model, allocators as rows, targets as columns."""
    targets = data["targets"]
    lines = [START, "## Pruning without fine-tuning (no dreaming, no distillation)", "",
             f"Command: `{data['command']}`  ",
             f"Machine: {data['machine']}, {data['threads']} thread(s). MACs counted at "
             f"3x{data['flops_size']}x{data['flops_size']}; PSNR on each teacher's synthetic "
             "test set (`synthetic_test_set(task)`, metric space of the model). Seconds: "
             "allocation + masking + MAC verification; the adaptive allocator's drift "
             f"measurement ({data['calibration'][0]} synthetic images of "
             f"{data['calibration'][1]} px) is included in its first target. Rows marked "
             "(channel): whole channels removed (`--granularity channel`); their seconds "
             "include Torch-Pruning's tracing and, for adaptive, the groups' drift "
             "measurement (keep levels "
             f"{', '.join(map(str, data.get('channel_keep_levels', [])))} and each group's "
             "least count).", ""]
    for model in data["models"]:
        header = "| allocator | " + " | ".join(
            f"F={t} PSNR | SSIM | MACs kept | s" for t in targets) + " |"
        lines += [f"### {model['model']} ({model['label']}, {model['task']}, "
                  f"{model['metric_space'].upper()}, {model['eval_images']} images)", "",
                  f"Teacher (weights sha256 {model.get('weights', '?')}): PSNR "
                  f"{model['teacher']['psnr']:.2f} dB, SSIM "
                  f"{model['teacher']['ssim']:.4f}; {model['pruned_layers']} layers pruned, "
                  f"kept dense: {', '.join(model['excluded_layers'])}; drift measurement "
                  f"{model['drift_seconds']:.1f} s.", "",
                  header, "|---|" + "---|---|---|---|" * len(targets),
                  "| teacher | " + " | ".join(
                      f"{model['teacher']['psnr']:.2f} | {model['teacher']['ssim']:.4f} | "
                      "1.0000 | " for _ in targets) + " |"]
        kinds = dict.fromkeys((r["allocator"], r.get("granularity", "unstructured"))
                              for r in model["rows"])
        for allocator, granularity in kinds:
            cells = []
            for target in targets:
                row = next(r for r in model["rows"]
                           if r["allocator"] == allocator and r["target"] == target
                           and r.get("granularity", "unstructured") == granularity)
                cells.append(f"{row['psnr']:.2f} | {row['ssim']:.4f} | "
                             f"{row['macs_ratio']:.4f} | {row['seconds']:.1f}")
            label = allocator if granularity == "unstructured" else f"{allocator} (channel)"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=None,
                        help="bundled teachers to run (default: all that ship)")
    parser.add_argument("--random-tiny", nargs="+", default=None, metavar="MODEL",
                        help="untrained tiny models instead of teachers (a dry run; not "
                             "written to docs/RESULTS.md)")
    parser.add_argument("--targets", type=float, nargs="+", default=[0.58, 0.40])
    parser.add_argument("--allocators", nargs="+", default=list(ALLOCATORS),
                        choices=list(ALLOCATORS))
    parser.add_argument("--channel-allocators", nargs="*", default=[],
                        choices=list(CHANNEL_ALLOCATORS),
                        help="channel-granularity allocators to add as rows (default: none)")
    parser.add_argument("--channel-models", nargs="+", default=None,
                        help="models that get the channel rows (default: every model run)")
    parser.add_argument("--channel-keep-levels", type=float, nargs="+",
                        default=list(DEFAULT_CHANNEL_LEVELS),
                        help="adaptive (channel): fractions of a group kept where drift is "
                             "measured")
    parser.add_argument("--flops-size", type=int, default=256)
    parser.add_argument("--calibration-count", type=int, default=4)
    parser.add_argument("--calibration-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    models: list[tuple[LoadedModel, str]] = []
    if args.random_tiny:
        for name in args.random_tiny:
            torch.manual_seed(args.seed)
            models.append((load_model(name, "tiny", use_bundled=False), "untrained tiny"))
    else:
        names = args.models or bundled_teachers()
        if not names:
            raise SystemExit("no bundled teacher in dreamprune_cli/assets/teachers; train them "
                             "(bench/train_teachers.py) or pass --random-tiny MODEL ...")
        for name in names:
            path = bundled_teacher_path(name)
            if path is None:
                raise SystemExit(f"{name}: no bundled teacher")
            models.append((load_model(name, weights=path), "bundled teacher"))

    channel_models = args.channel_models or [loaded.name for loaded, _ in models]
    results = [run_model(loaded, label, args.targets, args.allocators, args.flops_size,
                         args.calibration_count, args.calibration_size, args.seed,
                         args.channel_allocators if loaded.name in channel_models else [],
                         tuple(args.channel_keep_levels))
               for loaded, label in models]
    command = " ".join(["python bench/prune_no_finetune.py", shlex.join(sys.argv[1:])])
    data = {"command": command.strip(),
            "machine": f"{platform.processor() or platform.machine()}, torch "
                       f"{torch.__version__}",
            "threads": args.threads, "flops_size": args.flops_size, "targets": args.targets,
            "calibration": [args.calibration_count, args.calibration_size],
            "channel_keep_levels": args.channel_keep_levels, "models": results}
    section = markdown(data)
    print(section)
    if args.no_write or args.random_tiny:
        return
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps(data, indent=2) + "\n")
    write_section(section, RESULTS_MD, START, END)


if __name__ == "__main__":
    main()
