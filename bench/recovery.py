"""What each recovery lever buys a pruned student of a real network, chosen on synthetic
validation and then scored once on the real test set.

For PReNet6 (the authors' Rain100L weights; 100 Rain100L pairs, Y) and GCANet (the authors'
dehazing weights; 50 SOTS-indoor pairs, RGB), one pruned student per ``--granularity``
(``unstructured``: the adaptive masks of ``real_table1.py``; ``channel``: LAMP widths;
``depth`` and ``depth+channel``: chosen by drift) and ``--target`` (pruned once and cached in
``--work-dir``) is recovered by each *lever*:
a named set of settings (``LEVERS``: the method's dream + distill, synthetic, mixed or
adversarial inputs,
layer-wise reconstruction at prune time, a cosine learning-rate schedule with warm-up, an EMA
of the student's weights, dreams seeded from synthetic images, a feature term, and their
combinations). Every lever starts from the same pruned student and takes ``--steps`` joint
steps of the model preset's schedule.

**Choosing.** Each row records the student's *fidelity* (PSNR of its output against the
teacher's) on ``real_table1.VALIDATION_COUNT`` (16) synthetic degraded images of the teacher's task
(procedural scenes; ``--validation-size`` px, default 128 for PReNet, 256 for GCANet whose
instance norms make small images a poor proxy). No real image is read until ``--real``.

**Reporting.** ``--real`` scores every lever row of the given teacher, granularity and target
on the real pairs once (paired gap to the teacher row of ``bench/results/real_table1.jsonl``)
and marks the lever and step count with the best synthetic fidelity as ``chosen`` (the choice
is made from rows written before any real score is read).

Rows go to ``bench/results/recovery.jsonl`` (one JSON line each, with wall times and the
machine's load); rows already there are skipped, so an interrupted run resumes.
``--markdown`` prints the per-lever tables for docs/RESULTS.md.

Usage::

    python bench/recovery.py --teacher prenet --granularity channel --target 0.58 \\
        --levers dreams synthetic reconstruct+synthetic --steps 200
    python bench/recovery.py --teacher prenet --granularity channel --target 0.58 --real
    python bench/recovery.py --markdown
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

RESULTS = Path(__file__).resolve().parent / "results" / "recovery.jsonl"
VALIDATION_SIZES = {"prenet": 128, "gcanet": 256}
PHOTOS = "$photos_dir"
"""Placeholder of the ``photos`` lever's ``clean_dir``: replaced by ``--photos-dir``."""

LEVERS: dict[str, dict[str, Any]] = {
    # the method: output L1 on dreams, the preset's constant learning rate
    "dreams": {"inputs": "dreams"},
    "synthetic": {"inputs": "synthetic"},
    "mixed": {"inputs": "mixed"},
    "seeded": {"inputs": "dreams", "dream_init": "synthetic"},
    "cosine+synthetic": {"inputs": "synthetic", "lr_schedule": "cosine", "warmup_steps": 20},
    "ema+synthetic": {"inputs": "synthetic", "ema_decay": 0.99},
    "lr3x+synthetic": {"inputs": "synthetic", "student_lr_factor": 3.0},
    "feat+synthetic": {"inputs": "synthetic", "lambda_feat": 1.0},
    "reconstruct": {"reconstruct": True},
    "reconstruct+synthetic": {"reconstruct": True, "inputs": "synthetic"},
    "reconstruct+cosine+synthetic": {"reconstruct": True, "inputs": "synthetic",
                                     "lr_schedule": "cosine", "warmup_steps": 20},
    # the student trained on 128 or 256 px images instead of the preset's 64 (instance norms)
    "synthetic@128": {"inputs": "synthetic", "size": 128},
    "synthetic@256": {"inputs": "synthetic", "size": 256},
    # indoor rooms hazed along their own depth instead of dead leaves over a random depth
    "rooms": {"inputs": "synthetic", "scenes": "rooms"},
    # a handful of unrelated natural photographs as the clean scenes (``--photos-dir``;
    # bench/photos.py extracts scikit-image's six): what a user's own clean photos buy
    "photos": {"inputs": "synthetic", "clean_dir": PHOTOS},
    # more calibration images, smaller: 32 of 128 px instead of 8 of 256 (4x the rows)
    "reconstruct32+synthetic": {"reconstruct": True, "reconstruct_count": 32,
                                "reconstruct_size": 128, "inputs": "synthetic"},
    # 16 calibration images near the real sets' size (SOTS: 620 x 460) instead of 8 of 256
    "reconstruct16@480+synthetic": {"reconstruct": True, "reconstruct_count": 16,
                                    "reconstruct_size": 480, "inputs": "synthetic"},
    # session 21: more calibration images at the same or a larger size, and the ridge pulling
    # a structured student's layers towards their pruned (the teacher's) weights, stronger
    "reconstruct64+synthetic": {"reconstruct": True, "reconstruct_count": 64,
                                "reconstruct_size": 128, "inputs": "synthetic"},
    "reconstruct32@256+synthetic": {"reconstruct": True, "reconstruct_count": 32,
                                    "reconstruct_size": 256, "inputs": "synthetic"},
    "reconstruct32cur+synthetic": {"reconstruct": True, "reconstruct_count": 32,
                                   "reconstruct_size": 128, "reconstruct_prior": "current",
                                   "inputs": "synthetic"},
    "reconstruct32cur0.01+synthetic": {"reconstruct": True, "reconstruct_count": 32,
                                       "reconstruct_size": 128,
                                       "reconstruct_prior": "current",
                                       "reconstruct_ridge": 0.01, "inputs": "synthetic"},
    "reconstruct32cur0.1+synthetic": {"reconstruct": True, "reconstruct_count": 32,
                                      "reconstruct_size": 128,
                                      "reconstruct_prior": "current",
                                      "reconstruct_ridge": 0.1, "inputs": "synthetic"},
    "reconstruct32cur1+synthetic": {"reconstruct": True, "reconstruct_count": 32,
                                    "reconstruct_size": 128, "reconstruct_prior": "current",
                                    "reconstruct_ridge": 1.0, "inputs": "synthetic"},
    "reconstruct64cur0.1+synthetic": {"reconstruct": True, "reconstruct_count": 64,
                                      "reconstruct_size": 128,
                                      "reconstruct_prior": "current",
                                      "reconstruct_ridge": 0.1, "inputs": "synthetic"},
    # half of each synthetic batch moved (one PGD step, radius 0.03) towards where student
    # and teacher disagree most: disagreement-seeking inputs near the synthetic ones
    "adversarial": {"inputs": "adversarial", "adversarial_eps": 0.03, "adversarial_steps": 1},
    "reconstruct32cur0.1+synthetic@256": {"reconstruct": True, "reconstruct_count": 32,
                                          "reconstruct_size": 128,
                                          "reconstruct_prior": "current",
                                          "reconstruct_ridge": 0.1, "inputs": "synthetic",
                                          "size": 256},
    "reconstruct32cur0.1+adversarial": {"reconstruct": True, "reconstruct_count": 32,
                                        "reconstruct_size": 128,
                                        "reconstruct_prior": "current",
                                        "reconstruct_ridge": 0.1, "inputs": "adversarial",
                                        "adversarial_eps": 0.03, "adversarial_steps": 1},
}
"""Lever name -> settings. ``reconstruct`` (with ``reconstruct_count`` images of
``reconstruct_size`` px, default 8 of 256; ``reconstruct_prior`` and ``reconstruct_ridge``:
:func:`dreamprune_cli.reconstruct_student`'s ``prior`` and ``ridge``) acts at prune time; ``student_lr_factor``
multiplies the preset's student learning rate; every other key is a keyword of
:func:`dreamprune_cli.distill`."""


def _rows(path: Path = RESULTS) -> list[dict[str, Any]]:
    return read_rows(path)


def _append(row: dict[str, Any]) -> None:
    append_row(row, RESULTS)


def _teacher_row(model: str) -> dict[str, Any]:
    for row in _rows(TABLE1):
        if row["teacher"] == model and row["row"] == "teacher":
            return row
    raise SystemExit(f"no teacher row for {model} in {TABLE1}: run bench/real_table1.py first")


class Recovery:
    """One teacher's pruned student, recovered lever by lever; artefacts cached on disk."""

    def __init__(self, teacher: str, granularity: str, target: float, steps: int, seed: int,
                 work_dir: Path, validation_size: int, validation_scenes: str = "leaves",
                 photos_dir: Path | None = None) -> None:
        self.bench = Bench(TEACHERS[teacher], steps=steps, seed=seed, work_dir=work_dir,
                           limit=None)
        self.name, self.granularity, self.target = teacher, granularity, target
        self.steps, self.seed, self.validation_size = steps, seed, validation_size
        self.validation_scenes = validation_scenes
        self.photos_dir = photos_dir
        self.work = self.bench.work / f"recovery_{granularity.replace('/', '_')}_{target}"
        self.work.mkdir(parents=True, exist_ok=True)

    def fidelity(self, student: Any) -> float:
        """Mean PSNR (dB) of the student's output against the teacher's on the synthetic
        validation images of ``validation_size`` px and ``validation_scenes``
        (:meth:`real_table1.Bench.fidelity`)."""
        return self.bench.fidelity(student, self.validation_size, self.validation_scenes)

    def pruned(self, reconstruct: bool, count: int = 8, size: int = 256,
               prior: str | None = None, ridge: float | None = None
               ) -> tuple[Any, dict[str, Any], float]:
        """The pruned student (``reconstruct``: repaired layer by layer after the cut on
        ``count`` synthetic images of ``size`` px, the ridge's ``prior`` and strength
        ``ridge``, ``None``: the defaults), its pruning details and the seconds spent now (0
        when cached)."""
        from dreamprune_cli import load_student, save_student

        name = "pruned_reconstructed" + ("" if (count, size) == (8, 256)
                                         else f"_{count}x{size}")
        name += "" if prior is None else f"_{prior}"
        name += "" if ridge is None else f"_ridge{ridge:g}"
        folder = self.work / (name if reconstruct else "pruned")
        if (folder / "student.safetensors").exists():
            details = json.loads((folder / "details.json").read_text())
            return load_student(folder / "student.safetensors", self.name), details, 0.0
        start = time.perf_counter()
        if reconstruct:
            import dreamprune_cli

            if not hasattr(dreamprune_cli, "reconstruct_student"):
                raise SystemExit("this checkout has no reconstruct_student: drop the "
                                 "reconstruct levers")
            student, cut, _ = self.pruned(False)
            # unnamed: the repair as session 14-20 ran it (ridge 0.001, towards zero for a
            # structured student), so the earlier levers keep their meaning
            options = {"prior": prior or ("zero" if student.structured else "current"),
                       "ridge": 1e-3 if ridge is None else ridge}
            report = dreamprune_cli.reconstruct_student(self.bench.teacher, student,
                                                        count=count, size=size,
                                                        seed=self.seed, **options)
            details = {**cut, "reconstruction": _jsonable(report)}  # the cut's MAC ratio
        else:
            student, details = self._prune()
        folder.mkdir(parents=True, exist_ok=True)
        save_student(student, folder)
        (folder / "details.json").write_text(json.dumps(details))
        return student, details, time.perf_counter() - start

    def _prune(self) -> tuple[Any, dict[str, Any]]:
        from dreamprune_cli.prune.channel.plan import prune_channels
        from dreamprune_cli.prune.depth.plan import prune_depth, prune_depth_channel

        teacher, target = self.bench.teacher, self.target
        # "<granularity>/<allocator>": the channel part's allocator (default lamp)
        granularity, _, channel_allocator = self.granularity.partition("/")
        channel_allocator = channel_allocator or "lamp"
        if granularity == "unstructured":  # the adaptive masks of Table 1 (its cache)
            from dreamprune_cli.flops import count_costs
            from dreamprune_cli.models.adapter import network_input_size

            student, _ = self.bench.pruned(target, "adaptive")
            size = network_input_size(teacher.info, 256)
            costs = count_costs(student.network, size)
            return student, {"macs_ratio": costs.macs / costs.macs_dense,
                             "student_granularity": "unstructured"}
        if granularity == "channel":
            result = prune_channels(teacher, target, channel_allocator, flops_size=256,
                                    seed=self.seed, min_keep=self.bench.settings.prune.min_keep)
        elif granularity == "depth":
            result = prune_depth(teacher, target, flops_size=256, seed=self.seed)
        elif granularity == "depth+channel":
            result = prune_depth_channel(teacher, target, channel_allocator, flops_size=256,
                                         seed=self.seed)
        elif granularity.startswith("depth") and granularity.endswith("+channel"):
            # a forced split: depth cut to its own target first, channels complete the rest
            depth_target = float(granularity[len("depth"):-len("+channel")])
            depth = Recovery(self.name, "depth", depth_target, 0, self.seed,
                             self.bench.work.parent, self.validation_size,
                             self.validation_scenes)  # cached
            depth_student, depth_details, _ = depth.pruned(False)
            depth_ratio = depth_details["macs_ratio"]
            result = prune_channels(depth_student, target / depth_ratio, channel_allocator,
                                    flops_size=256, seed=self.seed,
                                    min_keep=self.bench.settings.prune.min_keep)
            result.student.granularity = "depth+channel"
            result.student.config = dict(depth_student.config)
            return result.student, {"macs_ratio": depth_ratio * result.macs_ratio,
                                    "student_granularity": "depth+channel",
                                    "depth_macs_ratio": depth_ratio}
        else:
            raise SystemExit(f"--granularity {self.granularity}: expected unstructured, "
                             "channel, depth or depth+channel")
        return result.student, {"macs_ratio": result.macs_ratio,
                                 "student_granularity": result.granularity}

    def recovered(self, lever: str) -> tuple[Any, dict[str, Any]]:
        """The student after ``lever`` (cached) and the row's measured fields."""
        from dreamprune_cli import distill, load_student, save_student

        settings = dict(LEVERS[lever])
        reconstruct = bool(settings.pop("reconstruct", False))
        student, details, prune_seconds = self.pruned(
            reconstruct, settings.pop("reconstruct_count", 8),
            settings.pop("reconstruct_size", 256), settings.pop("reconstruct_prior", None),
            settings.pop("reconstruct_ridge", None))
        row: dict[str, Any] = {"macs_ratio": details.get("macs_ratio"),
                               "prune_seconds": prune_seconds,
                               "fidelity_pruned": self.fidelity(student)}
        if "reconstruction" in details:
            row["reconstruction"] = details["reconstruction"]
        folder = self.work / f"{lever}_{self.steps}"
        if self.steps == 0:
            return student, row
        if (folder / "student.safetensors").exists():
            return load_student(folder / "student.safetensors", self.name), row
        if settings.get("clean_dir") == PHOTOS:
            if self.photos_dir is None:
                raise SystemExit(f"lever {lever}: needs --photos-dir (bench/photos.py)")
            settings["clean_dir"] = self.photos_dir
        plan = self.bench.schedule()
        factor = settings.pop("student_lr_factor", 1.0)
        start = time.perf_counter()
        plan["student_lr"] *= factor
        history = distill(self.bench.teacher, student, self.steps, seed=self.seed,
                          **{**plan, **settings})  # a lever's value replaces the preset's
        row["distill_seconds"] = time.perf_counter() - start
        row["final_kd"] = history[-1]["kd"] if history else None
        folder.mkdir(parents=True, exist_ok=True)
        save_student(student, folder)
        return student, row


def _photos_field(lever: str, photos_dir: Path | None) -> dict[str, Any]:
    """``{"photos": [file names]}`` for a lever on ``--photos-dir``'s images, else ``{}``."""
    if LEVERS[lever].get("clean_dir") != PHOTOS or photos_dir is None:
        return {}
    return {"photos": sorted(p.name for p in Path(photos_dir).iterdir() if p.is_file())}


def _jsonable(value: Any) -> Any:
    """A report object as JSON-ready data (dataclasses, mappings, sequences, numbers)."""
    from dataclasses import asdict, is_dataclass

    if is_dataclass(value):
        return _jsonable(asdict(value))
    if hasattr(value, "as_dict"):
        return _jsonable(value.as_dict())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    return str(value)


def _key(row: dict[str, Any]) -> tuple:
    return (row["teacher"], row["granularity"], row["target"], row["lever"], row["steps"],
            _validation(row))


def _validation(row: dict[str, Any]) -> tuple[int, str]:
    """The validation set a row was screened on: its size and scenes (``leaves`` unless
    recorded)."""
    return row["validation_size"], row.get("validation_scenes", "leaves")


def _validation_label(size: int, scenes: str) -> str:
    return f"{size} px" if scenes == "leaves" else f"{size} px {scenes}"


def screen(args: argparse.Namespace) -> None:
    """Synthetic-validation rows for each lever (no real image)."""
    size = args.validation_size or VALIDATION_SIZES[args.teacher]
    scenes = args.validation_scenes
    recovery = Recovery(args.teacher, args.granularity, args.target, args.steps, args.seed,
                        Path(args.work_dir), size, scenes, args.photos_dir)
    done = {_key(r) for r in _rows()}
    for lever in args.levers:
        key = (args.teacher, args.granularity, args.target, lever, args.steps, (size, scenes))
        if key in done:
            print(f"skip {key}: already in {RESULTS.name}", file=sys.stderr)
            continue
        start = time.perf_counter()
        student, fields = recovery.recovered(lever)
        row = {"teacher": args.teacher, "granularity": args.granularity,
               "target": args.target, "lever": lever, "settings": LEVERS[lever],
               "steps": args.steps, "validation_size": size,
               **({} if scenes == "leaves" else {"validation_scenes": scenes}),
               "seed": args.seed, **_photos_field(lever, args.photos_dir),
               **fields, "fidelity": recovery.fidelity(student),
               "wall_seconds": time.perf_counter() - start, "threads": args.threads,
               "load": load_average(), "date": time.strftime("%Y-%m-%d %H:%M")}
        _append(row)
        print(f"{args.teacher} {args.granularity} F={args.target} {lever} {args.steps} steps: "
              f"fidelity {fields['fidelity_pruned']:.2f} -> {row['fidelity']:.2f} dB on "
              f"synthetic validation ({row['wall_seconds']:.0f} s)", file=sys.stderr)


def score_real(args: argparse.Namespace) -> None:
    """Score the screened levers on the real pairs once; mark the synthetic choice."""
    size = args.validation_size or VALIDATION_SIZES[args.teacher]
    scenes = args.validation_scenes
    group = [r for r in _rows() if (r["teacher"], r["granularity"], r["target"],
                                    _validation(r)) ==
             (args.teacher, args.granularity, args.target, (size, scenes))]
    rows = [r for r in group if "psnr" not in r]
    scored = {_key(r)[:5] for r in _rows() if "psnr" in r}  # a student, whatever size chose it
    if not rows:
        raise SystemExit("no screened rows: run without --real first")
    # the rule: the best fidelity among every row of the group at this validation, scored
    # before or not; a new row is chosen only when it is that best
    best = max(group, key=lambda r: r["fidelity"])
    chosen = (best["lever"], best["steps"])
    teacher_row = _teacher_row(args.teacher)
    recovery = Recovery(args.teacher, args.granularity, args.target, 0, args.seed,
                        Path(args.work_dir), size, scenes, args.photos_dir)
    for row in rows:
        if _key(row)[:5] in scored or (args.levers and row["lever"] not in args.levers) or (
                args.only_steps is not None and row["steps"] != args.only_steps):
            continue
        recovery.steps = row["steps"]
        student, _ = recovery.recovered(row["lever"])
        scores = recovery.bench.evaluate(student)
        real = {**row, **scores, "chosen": (row["lever"], row["steps"]) == chosen,
                "real_date": time.strftime("%Y-%m-%d %H:%M"), "real_load": load_average()}
        real["gap_db"], real["gap_se"] = gap(real, teacher_row)
        _append(real)
        print(f"{args.teacher} {args.granularity} F={args.target} {row['lever']}: "
              f"{scores['psnr']:.2f} dB ({real['gap_db']:+.2f}, s.e. {real['gap_se']:.2f})"
              f"{' (chosen)' if real['chosen'] else ''}", file=sys.stderr)


def markdown() -> None:
    """Per teacher, granularity and target: each lever's synthetic fidelity (a column per
    validation size screened) and its real gap (scored once, whichever size chose it)."""
    rows = _rows()
    real = {_key(r)[:5]: r for r in rows if "psnr" in r}
    groups: dict[tuple, dict[tuple, dict[tuple[int, str], dict[str, Any]]]] = {}
    for row in rows:
        if "psnr" not in row:
            group = groups.setdefault((row["teacher"], row["granularity"], row["target"]), {})
            group.setdefault((row["lever"], row["steps"]), {})[_validation(row)] = row
    for (teacher, granularity, target), members in sorted(
            groups.items(), key=lambda item: (item[0][0] != "prenet", item[0][1], -item[0][2])):
        sizes = sorted({size for by_size in members.values() for size in by_size})
        print(f"\n**{TEACHERS[teacher].label}, {granularity}, F = {target}**\n")
        print("| lever | steps | " + " | ".join(
            f"fidelity pruned -> recovered (synthetic {_validation_label(*size)}, dB)"
            for size in sizes) +
            " | real PSNR | gap to teacher (s.e.) | prune + distill time |")
        print("|---|---|" + "---|" * len(sizes) + "---|---|---|")
        choices = sorted((r["real_date"], k) for k, r in real.items()
                         if k[:3] == (teacher, granularity, target) and r.get("chosen"))
        latest = choices[-1][1] if choices else None  # a later screening's choice supersedes
        for (lever, steps), by_size in members.items():
            scored = real.get((teacher, granularity, target, lever, steps))
            psnr = f"{scored['psnr']:.2f}" if scored else "-"
            gap_text = f"{scored['gap_db']:+.2f} ({scored['gap_se']:.2f})" if scored else "-"
            mark = ""
            if scored and scored.get("chosen"):
                mark = " (chosen" + ("" if len(sizes) == 1
                                     else f" at {_validation_label(*_validation(scored))}")
                if (teacher, granularity, target, lever, steps) != latest:
                    mark += ", superseded by a later screening"
                mark += ")"
            first = next(iter(by_size.values()))
            seconds = first.get("prune_seconds", 0) + first.get("distill_seconds", 0)
            fidelity = " | ".join(
                f"{by_size[size]['fidelity_pruned']:.2f} -> {by_size[size]['fidelity']:.2f}"
                if size in by_size else "-" for size in sizes)
            name = lever if steps else (f"{lever.split('+')[0]} alone (no distillation)"
                                        if LEVERS.get(lever, {}).get("reconstruct")
                                        else "none (the pruned student)")
            print(f"| {name}{mark} | {steps} | {fidelity} | {psnr} | {gap_text} | "
                  f"{seconds:.0f} s |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", choices=sorted(TEACHERS), default="prenet")
    parser.add_argument("--granularity", default="channel",
                        choices=["unstructured", "channel", "depth", "depth+channel"])
    parser.add_argument("--target", type=float, default=0.58)
    parser.add_argument("--depth-target", type=float, default=None,
                        help="with depth+channel: force the split, the depth cut to this MAC "
                             "fraction first and channels for the rest (rows are labelled "
                             "depth<F>+channel)")
    parser.add_argument("--channel-allocator", choices=["lamp", "adaptive", "uniform"],
                        default="lamp",
                        help="the channel part's allocator (rows of another than lamp are "
                             "labelled <granularity>/<allocator>)")
    parser.add_argument("--levers", nargs="*", choices=sorted(LEVERS), default=[])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validation-size", type=int, default=None)
    parser.add_argument("--validation-scenes", choices=["leaves", "rooms", "mixed"],
                        default="leaves",
                        help="the synthetic validation's clean scenes: dead leaves (default), "
                             "indoor rooms hazed along their depth, or half of each")
    parser.add_argument("--photos-dir", type=Path, default=None,
                        help="clean photographs for the photos lever (bench/photos.py)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", default="runs/recovery")
    parser.add_argument("--real", action="store_true",
                        help="score the screened levers on the real pairs (once)")
    parser.add_argument("--only-steps", type=int, default=None,
                        help="with --real: score only the rows of this many steps (with "
                             "--levers, only those levers')")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.markdown:
        markdown()
        return
    if args.depth_target is not None:
        if args.granularity != "depth+channel" or not args.target < args.depth_target <= 1:
            parser.error("--depth-target: needs --granularity depth+channel and a fraction "
                         "between --target and 1")
        args.granularity = f"depth{args.depth_target}+channel"
    if args.channel_allocator != "lamp":
        if "channel" not in args.granularity:
            parser.error("--channel-allocator: needs a granularity that removes channels")
        args.granularity += f"/{args.channel_allocator}"
    torch.set_num_threads(args.threads)
    if args.real:
        score_real(args)
    else:
        if not args.levers:
            parser.error("--levers: name at least one lever")
        screen(args)


if __name__ == "__main__":
    main()
