"""The paper's Table 1 measured on real teachers and real test sets, one resumable row at a time.

For PReNet6 (the authors' Rain100L weights) on the 100 Rain100L test pairs (Y) and GCANet
(the authors' dehazing weights) on the 50 shared SOTS-indoor pairs (RGB), at each MAC target F:

* ``teacher``: the authors' network as released;
* ``prune/<allocator>``: every allocator without distillation (``uniform`` is the paper's l1
  magnitude baseline; ``erk`` and ``lamp`` its other baselines; ``global`` and ``adaptive``);
* ``dream_distill/<allocator>``: the pruned student distilled on dreams (the method), for the
  best allocator and for LAMP;
* ``noise_distill/<best>`` and ``synth_distill/<best>``: the same masks, steps, batch and
  learning rate, distilled on plain uniform noise (no dreaming) and on the project's synthetic
  degraded images (``dreamprune synth``'s generator: procedural scenes with synthetic rain or
  haze; no real degraded image);
* with ``--granularity channel``: ``channel_prune/<allocator>`` (whole channels removed with
  Torch-Pruning, ``dreamprune prune --granularity channel``; the channel allocators) and
  ``channel_dream_distill/<allocator>`` (that thinner student distilled on dreams) for the
  best channel allocator, chosen the same way, then its ``channel_noise_distill`` and
  ``channel_synth_distill`` references.

Nothing in the compression sees a real degraded or clean image: dreams start from noise and
aim at procedural clean scenes. The **best allocator** is chosen before any real score is read:
the one whose pruned student (no distillation) is most faithful to the teacher (PSNR of the
student's output against the teacher's) on 16 synthetic degraded images of 128 px of the
teacher's task. The dreaming and distillation settings are the model's preset
(``presets/<model>.toml``), with ``--steps`` joint steps.

Each row is one JSON line in ``bench/results/real_table1.jsonl`` with its per-image scores
(so the gaps to the teacher are paired), MACs at 3x256x256, wall times and the machine's
load; rows already there are skipped, so an interrupted run resumes where it stopped. Pruned
and distilled students are kept in ``--work-dir`` (default ``runs/real_table1``, ignored by
git) and reused. ``--markdown`` prints the tables for docs/RESULTS.md.

Usage::

    python bench/real_table1.py --teacher prenet [--targets 0.58 0.40] [--rows ...]
    python bench/real_table1.py --teacher gcanet --steps 400 --threads 2
    python bench/real_table1.py --markdown
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchkit beside it
from benchkit import append_row, load_1min, read_rows  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REALDATA = (ROOT / ".." / "shared" / "realdata").resolve()
RESULTS = ROOT / "bench" / "results" / "real_table1.jsonl"
SCREEN_RESULTS = ROOT / "bench" / "results" / "real_dream_variants.jsonl"
VARIANT_KEYS = {"noise_lr": float, "lambda_orth": float, "lambda_tv": float,
                "lambda_far": float, "round_steps": int, "representation": str, "init": str,
                "student_lr": float}
ALLOCATORS = ("uniform", "erk", "lamp", "global", "adaptive")
CHANNEL_ALLOCATORS = ("uniform", "global", "lamp", "adaptive")
VALIDATION_COUNT, VALIDATION_SIZE, VALIDATION_SEED = 16, 128, 1234


@dataclass(frozen=True)
class Teacher:
    """A real teacher and the real pairs it is scored on."""

    model: str
    weights: Path
    inputs: Path
    targets: Path
    pairing: str
    label: str


RAIN100L = REALDATA / "KaneWANG0816+RGR" / "rain100L" / "test" / "small"
SOTS = REALDATA / "square-moon+haze" / "data" / "RESIDE-IN" / "test"
TEACHERS = {
    "prenet": Teacher("prenet", REALDATA / "csdwren+PReNet/logs/Rain100L/PReNet6/net_latest.pth",
                      RAIN100L / "rain", RAIN100L / "norain", "stem",
                      "PReNet6 (Rain100L weights), 100 Rain100L test pairs, Y"),
    "gcanet": Teacher("gcanet", REALDATA / "cddlyf+GCANet/models/wacv_gcanet_dehaze.pth",
                      SOTS / "hazy", SOTS / "GT", "stem",
                      "GCANet (dehazing weights), 50 SOTS-indoor pairs, RGB"),
}

# The paper's numbers at about 40 % fewer FLOPs (seed Tables 1 and 2), for the docs table.
PAPER = [
    ("MPRNet, Rain100L (Table 1), -37.7 %", 36.40, {"uniform": 27.72, "erk": 34.32,
                                                    "lamp": 35.59, "ours": 36.56}),
    ("HINet, Rain100L (Table 1), -41.3 %", 37.28, {"uniform": 29.49, "erk": 28.74,
                                                   "lamp": 30.98, "ours": 36.94}),
    ("FFA-Net, SOTS outdoor (Table 2), -41.5 %", 33.57, {"uniform": 20.93, "erk": 27.40,
                                                         "lamp": 28.60, "ours": 32.28}),
]


def _load_rows(path: Path | None = None) -> list[dict[str, Any]]:
    return read_rows(path or RESULTS)


def _key(row: dict[str, Any]) -> tuple[str, float | None, str, int, str]:
    """A row is its teacher, target, name, joint steps (0 without distillation) and dreaming
    variant ("" for the preset's), so a longer distillation or another variant is a new row
    beside the first."""
    return row["teacher"], row.get("target"), row["row"], row["steps"], row.get("variant", "")


def parse_variant(items: list[str] | None) -> dict[str, Any]:
    """``["noise_lr=0.2", "round_steps=10"]`` -> ``{"noise_lr": 0.2, "round_steps": 10}``:
    dreaming values that replace the preset's in the ``dream_distill`` rows."""
    variant: dict[str, Any] = {}
    for item in items or []:
        key, _, value = item.partition("=")
        if key not in VARIANT_KEYS or not value:
            raise SystemExit(f"--variant {item!r}: expected KEY=VALUE with KEY one of "
                             f"{', '.join(VARIANT_KEYS)}")
        variant[key] = VARIANT_KEYS[key](value)
    return variant


def variant_label(variant: dict[str, Any]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(variant.items()))


def _append(row: dict[str, Any], path: Path | None = None) -> None:
    append_row(row, path or RESULTS)


def _channel_tag(channel: bool) -> str:
    """The part of a cached file's name that tells channel students from masked ones."""
    return "_channel" if channel else ""


def _restore(network: torch.nn.Module, degraded: torch.Tensor, chunk: int = 4) -> torch.Tensor:
    """``network``'s outputs on ``degraded``, clamped to [0, 1], ``chunk`` images at a time
    (bounded memory at 256 px)."""
    network = network.eval()
    with torch.no_grad():
        return torch.cat([network(part).clamp(0, 1) for part in degraded.split(chunk)])


class Bench:
    """Runs the rows of one teacher; every expensive artefact is cached on disk."""

    def __init__(self, teacher: Teacher, steps: int, seed: int, work_dir: Path,
                 limit: int | None, variant: dict[str, Any] | None = None) -> None:
        from dreamprune_cli import load_model
        from dreamprune_cli.settings import resolve_settings

        self.spec = teacher
        self.steps = steps
        self.seed = seed
        self.limit = limit
        self.variant = variant or {}
        self.work = work_dir / teacher.model
        self.work.mkdir(parents=True, exist_ok=True)
        self.teacher = load_model(teacher.model, weights=teacher.weights)
        self.settings = resolve_settings({"model": teacher.model}, env={}).settings
        self._calibration: torch.Tensor | None = None
        self._drift: Any = None
        self._validation: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    # -- shared pieces ---------------------------------------------------------------------
    def schedule(self) -> dict[str, Any]:
        """The preset's dreaming and distillation values (``dreamprune config show``)."""
        dream, distill = self.settings.dream, self.settings.distill
        return {"batch_size": dream.batch_size, "size": dream.size, "noise_lr": dream.noise_lr,
                "lambda_orth": dream.lambda_orth, "lambda_tv": dream.lambda_tv,
                "lambda_far": dream.lambda_far, "round_steps": dream.round_steps,
                "student_lr": distill.student_lr, "lambda_kd": distill.lambda_kd}

    def evaluate(self, model: Any) -> dict[str, Any]:
        from dreamprune_cli import evaluate

        start = time.perf_counter()
        result = evaluate(model, self.spec.inputs, self.spec.targets, pairing=self.spec.pairing,
                          limit=self.limit)
        return {"psnr": result.psnr, "ssim": result.ssim, "count": len(result.per_image),
                "per_image": [[s.name, s.psnr, s.ssim] for s in result.per_image],
                "macs_256": result.macs_256,  # non-zero weights' MACs, counted by evaluate
                "eval_seconds": time.perf_counter() - start}

    def validation(self, size: int = VALIDATION_SIZE, scenes: str = "leaves"
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """``VALIDATION_COUNT`` synthetic degraded images ``(16, 3, size, size)`` of the
        teacher's task and the teacher's outputs on them (cached per size and scenes).
        ``scenes``: ``leaves`` (dead leaves, the default), ``rooms`` (indoor rooms hazed
        along their depth) or ``mixed`` (the first half of each set)."""
        key = (size, scenes)
        if key not in self._validation:
            from dreamprune_cli.data.clean import make_clean_source
            from dreamprune_cli.data.synthetic import make_degraded_batch

            task = self.teacher.info.task
            if scenes == "mixed":
                half = VALIDATION_COUNT // 2
                degraded = torch.cat([
                    self.validation(size, "leaves")[0][:half],
                    self.validation(size, "rooms")[0][:VALIDATION_COUNT - half]])
            else:
                degraded, _ = make_degraded_batch(task, VALIDATION_COUNT, size,
                                                  VALIDATION_SEED, make_clean_source(None, scenes))
            self._validation[key] = degraded, _restore(self.teacher.adapter(), degraded)
        return self._validation[key]

    def fidelity(self, student: Any, size: int = VALIDATION_SIZE, scenes: str = "leaves"
                 ) -> float:
        """Mean PSNR (dB) of the student's output against the teacher's on the validation
        images of ``size`` px and ``scenes``."""
        from dreamprune_cli import psnr

        degraded, reference = self.validation(size, scenes)
        return float(psnr(_restore(student.adapter(), degraded), reference).mean())

    def calibration(self) -> torch.Tensor:
        """The adaptive allocator's calibration dreams, as ``dreamprune pipeline`` makes them."""
        path = self.work / "calibration.pt"
        if path.exists():
            return torch.load(path, weights_only=True)
        from dreamprune_cli import dream

        plan = self.schedule()
        result = dream(self.teacher, count=plan["batch_size"],
                       steps=self.settings.pipeline.calibration_steps, size=plan["size"],
                       batch_size=plan["batch_size"], seed=self.seed,
                       noise_lr=plan["noise_lr"], lambda_orth=plan["lambda_orth"],
                       lambda_tv=plan["lambda_tv"], lambda_far=plan["lambda_far"])
        torch.save(result.dreams, path)
        return result.dreams

    def pruned(self, target: float, allocator: str, channel: bool = False) -> tuple[Any, float]:
        """The pruned student (masks, or whole channels removed when ``channel``), from the
        cache or pruned now; and the seconds spent."""
        from dreamprune_cli import load_student, prune_model, save_student
        from dreamprune_cli.prune.channel.plan import prune_channels

        folder = self.work / f"prune{_channel_tag(channel)}_{target}_{allocator}"
        if (folder / "student.safetensors").exists():
            return load_student(folder / "student.safetensors", self.teacher.name), 0.0
        start = time.perf_counter()
        calibration = self.calibration() if allocator == "adaptive" else None
        if channel:
            result = prune_channels(self.teacher, target, allocator, flops_size=256,
                                    min_keep=self.settings.prune.min_keep,
                                    calibration=calibration, seed=self.seed)
        else:
            result = prune_model(self.teacher, target, allocator, flops_size=256,
                                 calibration=calibration, drift=self._drift,
                                 min_keep=self.settings.prune.min_keep, seed=self.seed)
        if allocator == "adaptive" and not channel:
            self._drift = result.drift
        folder.mkdir(parents=True, exist_ok=True)
        save_student(result.student, folder)
        return result.student, time.perf_counter() - start

    def selection(self, target: float, channel: bool = False) -> dict[str, float]:
        """Validation fidelity (dB) of every allocator's pruned student at ``target``: the
        choice of the best allocator, made before any real image is scored (cached)."""
        path = self.work / f"selection{_channel_tag(channel)}_{target}.json"
        if path.exists():
            return json.loads(path.read_text())
        allocators = CHANNEL_ALLOCATORS if channel else ALLOCATORS
        scores = {a: self.fidelity(self.pruned(target, a, channel)[0]) for a in allocators}
        path.write_text(json.dumps(scores, indent=2))
        return scores

    def distilled(self, target: float, allocator: str, inputs: str,
                  channel: bool = False) -> tuple[Any, float]:
        """The student of ``allocator`` (``channel``: its channel-pruned student) distilled
        ``self.steps`` steps on ``inputs`` (``dreams``, ``noise`` or ``synth``), from the cache
        or distilled now (dreams with ``self.variant``'s values in place of the preset's);
        seconds spent distilling."""
        from dreamprune_cli import distill, load_student, save_student

        label = variant_label(self.variant) if inputs == "dreams" else ""
        folder = self.work / f"distill{_channel_tag(channel)}_{target}_{allocator}_" \
            f"{inputs}_{self.steps}{'_' + label if label else ''}"
        if (folder / "student.safetensors").exists():
            return load_student(folder / "student.safetensors", self.teacher.name), 0.0
        student, _ = self.pruned(target, allocator, channel)
        plan = self.schedule()
        if inputs == "dreams":
            plan.update(self.variant)
        common = {"student_lr": plan["student_lr"], "lambda_kd": plan["lambda_kd"],
                  "batch_size": plan["batch_size"], "size": plan["size"], "seed": self.seed}
        start = time.perf_counter()
        if inputs == "dreams":
            distill(self.teacher, student, self.steps, round_steps=plan["round_steps"],
                    noise_lr=plan["noise_lr"], lambda_orth=plan["lambda_orth"],
                    lambda_tv=plan["lambda_tv"], lambda_far=plan["lambda_far"],
                    **{k: plan[k] for k in ("representation", "init") if k in plan}, **common)
        else:  # a pool as large as the joint loop's draws: every step sees fresh images
            count = self.steps * plan["batch_size"]
            generator = torch.Generator().manual_seed(self.seed)
            if inputs == "noise":
                pool = torch.rand((count, 3, plan["size"], plan["size"]), generator=generator)
            else:
                from dreamprune_cli.data.synthetic import make_degraded_batch

                pool, _ = make_degraded_batch(self.teacher.info.task, count, plan["size"],
                                              self.seed)
            distill(self.teacher, student, self.steps, dreams=pool, **common)
        seconds = time.perf_counter() - start
        folder.mkdir(parents=True, exist_ok=True)
        save_student(student, folder)
        return student, seconds

    # -- rows ------------------------------------------------------------------------------
    def run_row(self, target: float | None, name: str, real: bool = True) -> dict[str, Any]:
        """One row: the model, its synthetic-validation fidelity and (``real``) its scores on
        the real pairs."""
        row: dict[str, Any] = {"teacher": self.spec.model, "target": target, "row": name,
                               "steps": 0, "prune_seconds": 0.0, "distill_seconds": 0.0}
        kind, _, allocator = name.partition("/")
        channel = kind.startswith("channel_")
        kind = kind.removeprefix("channel_")
        if channel:
            row["granularity"] = "channel"
        if name == "teacher":
            model = self.teacher
        elif kind == "prune":
            model, row["prune_seconds"] = self.pruned(target, allocator, channel)  # type: ignore
            row["allocator"] = allocator
        else:
            inputs = {"dream_distill": "dreams", "noise_distill": "noise",
                      "synth_distill": "synth"}[kind]
            model, row["distill_seconds"] = self.distilled(  # type: ignore
                target, allocator, inputs, channel)
            row.update(allocator=allocator, steps=self.steps, **self.schedule())
            if inputs == "dreams" and self.variant:
                row.update(self.variant, variant=variant_label(self.variant))
            row["student_fidelity"] = self.fidelity(model)
        if real:
            row.update(self.evaluate(model))
        return row


def planned_rows(targets: list[float], best: dict[float, str],
                 channel: bool = False) -> list[tuple]:
    """(target, row) in the order they run: the most telling rows first, so that a run
    stopped early has the method, its best baseline and the references."""
    rows: list[tuple] = [(None, "teacher")]
    for target in targets:
        chosen = best[target]
        if channel:
            first = [f"channel_prune/{chosen}", f"channel_dream_distill/{chosen}"]
            rest = [f"channel_prune/{a}" for a in CHANNEL_ALLOCATORS] + [
                f"channel_noise_distill/{chosen}", f"channel_synth_distill/{chosen}"]
            rows += [(target, name) for name in dict.fromkeys(first + rest)]
            continue
        first = [f"dream_distill/{chosen}", f"prune/{chosen}", "prune/lamp",
                 "dream_distill/lamp", f"noise_distill/{chosen}", f"synth_distill/{chosen}"]
        rest = [f"prune/{a}" for a in ALLOCATORS]
        rows += [(target, name) for name in dict.fromkeys(first + rest)]
    return rows


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    spec = TEACHERS[args.teacher]
    if not spec.weights.exists():
        raise SystemExit(f"{spec.weights}: missing (the real data lives in ../shared/realdata)")
    variant = parse_variant(args.variant)
    bench = Bench(spec, args.steps, args.seed, Path(args.work_dir), args.limit, variant)
    wanted = set(args.rows) if args.rows else None
    machine = {"machine": platform.machine(), "cpus": os.cpu_count(), "threads": args.threads,
               "torch": torch.__version__, "limit": args.limit,
               "command": "python bench/real_table1.py " + " ".join(sys.argv[1:])}
    done = {_key(row): row for row in _load_rows(SCREEN_RESULTS if args.screen else RESULTS)}
    channel = args.granularity == "channel"
    selections = {t: bench.selection(t, channel) for t in args.targets}
    best = {t: max(scores, key=scores.get) for t, scores in selections.items()}
    for target, scores in selections.items():
        print(f"F={target}: validation fidelity " + ", ".join(
            f"{a} {v:.2f}" for a, v in scores.items()) + f" dB; best {best[target]}",
            file=sys.stderr, flush=True)
    if args.select_only:
        return
    for target, name in planned_rows(args.targets, best, channel):
        steps = 0 if name == "teacher" or "prune/" in name else args.steps
        label = variant_label(variant) if "dream_distill/" in name else ""
        key = _key({"teacher": spec.model, "target": target, "row": name, "steps": steps,
                    "variant": label})
        if key in done or (wanted and name not in wanted):
            continue
        if variant and not label:  # a variant only concerns the dreaming rows
            continue
        if args.screen and steps == 0:  # screening compares distilled students only
            continue
        load_before = load_1min()
        start = time.perf_counter()
        print(f"{spec.model} F={target} {name} ...", file=sys.stderr, flush=True)
        row = bench.run_row(target, name, real=not args.screen)
        if target is not None:
            row.update(validation_fidelity=selections[target].get(row.get("allocator")),
                       best_allocator=best[target])
        row.update(machine, wall_seconds=time.perf_counter() - start,
                   load_before=load_before, load_after=load_1min(),
                   date=time.strftime("%Y-%m-%d"))
        _append(row, SCREEN_RESULTS if args.screen else RESULTS)
        done[_key(row)] = row
        scores = f"PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.4f}, " if "psnr" in row else ""
        fidelity = (f"fidelity on synthetic val. {row['student_fidelity']:.2f} dB, "
                    if "student_fidelity" in row else "")
        print(f"  {scores}{fidelity}{row['wall_seconds']:.0f} s", file=sys.stderr, flush=True)


# -- the table ----------------------------------------------------------------------------
def gap(row: dict[str, Any], teacher: dict[str, Any]) -> tuple[float, float]:
    """Mean per-image PSNR difference to the teacher (dB) and its paired standard error."""
    reference = {name: value for name, value, _ in teacher["per_image"]}
    diffs = [value - reference[name] for name, value, _ in row["per_image"]]
    mean = sum(diffs) / len(diffs)
    var = sum((d - mean) ** 2 for d in diffs) / max(len(diffs) - 1, 1)
    return mean, math.sqrt(var / len(diffs))


KINDS = ("prune", "dream_distill", "noise_distill", "synth_distill", "channel_prune",
         "channel_dream_distill", "channel_noise_distill", "channel_synth_distill")


def _table_order(row: dict[str, Any]) -> tuple:
    """Deeper cuts last; within a target: allocators alone (in ALLOCATORS' order), then each
    kind of distillation, shorter runs and the preset's dreaming first."""
    kind, _, allocator = row["row"].partition("/")
    return (-(row.get("target") or 1.0), KINDS.index(kind) if kind in KINDS else -1,
            ALLOCATORS.index(allocator) if allocator in ALLOCATORS else -1, row["steps"],
            row.get("variant", ""))


LABELS = {"prune": "no distillation", "dream_distill": "dream + distill (the method)",
          "noise_distill": "distill on plain noise", "synth_distill": "distill on synthetic "
          "degraded images", "channel_prune": "channels removed, no distillation",
          "channel_dream_distill": "channels removed, dream + distill",
          "channel_noise_distill": "channels removed, distill on plain noise",
          "channel_synth_distill": "channels removed, distill on synthetic degraded images"}


def _screen_inputs(row: dict[str, Any]) -> str:
    """What a screened row distilled on: the dreaming variant, or a reference's inputs."""
    kind = row["row"].split("/", 1)[0].removeprefix("channel_")
    if kind == "noise_distill":
        return "plain noise (reference)"
    if kind == "synth_distill":
        return "synthetic degraded images (reference)"
    return row.get("variant") or "preset"


def screen_markdown() -> list[str]:
    """The dreaming variants screened on the synthetic validation (``--screen``)."""
    rows = _load_rows(SCREEN_RESULTS)
    if not rows:
        return []
    lines = ["### Dreaming variants, screened on the synthetic validation (no real image)", "",
             "| teacher | F | allocator | dreaming | steps | fidelity on synthetic val., "
             "pruned -> trained (dB) | distill (s) | load |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        channel = " (channel)" if row.get("granularity") == "channel" else ""
        lines.append(f"| {row['teacher']} | {row['target']} | {row['allocator']}{channel} | "
                     f"{_screen_inputs(row)} | {row['steps']} | "
                     f"{row['validation_fidelity']:.2f} -> {row['student_fidelity']:.2f} | "
                     f"{row['distill_seconds']:.0f} | {row['load_before']:.1f} |")
    return lines + [""]


def markdown() -> str:
    rows = _load_rows()
    lines: list[str] = []
    for name, spec in TEACHERS.items():
        mine = [row for row in rows if row["teacher"] == name]
        teacher = next((row for row in mine if row["row"] == "teacher"), None)
        if teacher is None:
            continue
        lines += [f"### {spec.label}", "",
                  f"Teacher: PSNR {teacher['psnr']:.2f} dB, SSIM {teacher['ssim']:.4f}, "
                  f"{teacher['macs_256'] / 1e9:.1f} GMACs at 3x256x256, evaluated in "
                  f"{teacher['eval_seconds']:.0f} s ({teacher['threads']} threads, load "
                  f"{teacher['load_before']:.1f}).", "",
                  "| F | allocator | training | MACs kept | PSNR | SSIM | gap to teacher (dB, "
                  "paired s.e.) | fidelity on synthetic val., pruned -> trained (dB) | steps | "
                  "wall (s) |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in sorted(mine, key=_table_order):
            if row["row"] == "teacher":
                continue
            kind = row["row"].split("/", 1)[0]
            mean, error = gap(row, teacher)
            fidelity = row.get("validation_fidelity")
            trained = row.get("student_fidelity")
            variant = f" ({row['variant']})" if row.get("variant") else ""
            lines.append(
                f"| {row['target']} | {row['allocator']} | {LABELS[kind]}{variant} | "
                f"{row['macs_256'] / teacher['macs_256']:.3f} | {row['psnr']:.2f} | "
                f"{row['ssim']:.4f} | {mean:+.2f} ({error:.2f}) | "
                f"{'' if fidelity is None else f'{fidelity:.2f}'}"
                f"{'' if trained is None else f' -> {trained:.2f}'} | {row['steps']} | "
                f"{row['wall_seconds']:.0f} |")
        lines.append("")
    lines += screen_markdown()
    lines += ["The paper's rows at about 40 % fewer FLOPs (PSNR in dB; `uniform` is its l1):", "",
              "| network, set | original | l1 | erk | lamp | ours | ours - original |",
              "|---|---|---|---|---|---|---|"]
    for label, original, scores in PAPER:
        lines.append(f"| {label} | {original:.2f} | {scores['uniform']:.2f} | "
                     f"{scores['erk']:.2f} | {scores['lamp']:.2f} | {scores['ours']:.2f} | "
                     f"{scores['ours'] - original:+.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", choices=sorted(TEACHERS))
    parser.add_argument("--targets", type=float, nargs="+", default=[0.58, 0.40])
    parser.add_argument("--rows", nargs="+", help="only these rows, e.g. teacher prune/lamp")
    parser.add_argument("--select-only", action="store_true",
                        help="only choose the best allocator on the synthetic validation set")
    parser.add_argument("--steps", type=int, default=400, help="joint steps per distillation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="first N pairs only")
    parser.add_argument("--work-dir", default=str(ROOT / "runs" / "real_table1"))
    parser.add_argument("--results", default=None, help="the JSON-lines file of rows")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--variant", nargs="+", metavar="KEY=VALUE",
                        help="dreaming values in place of the preset's for the dream + distill "
                             f"rows ({', '.join(VARIANT_KEYS)}); only those rows run")
    parser.add_argument("--granularity", choices=("unstructured", "channel"),
                        default="unstructured",
                        help="channel: the channel_prune and channel_dream_distill rows "
                             "(whole channels removed, a thinner and faster student)")
    parser.add_argument("--screen", action="store_true",
                        help="distil and score on the synthetic validation only (no real "
                             "image), into bench/results/real_dream_variants.jsonl: how a "
                             "dreaming variant is chosen")
    args = parser.parse_args()
    RESULTS = Path(args.results) if args.results else RESULTS
    if args.markdown:
        print(markdown())
    elif args.teacher is None:
        parser.error("--teacher or --markdown")
    else:
        run(args)


if __name__ == "__main__":
    main()
