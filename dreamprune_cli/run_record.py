"""The settings that define a run, recorded in its folder and checked on ``--resume``.

``dream``, ``distill`` and ``pipeline`` write ``run.json`` into their folder before any work::

    {"command": "pipeline", "dreamprune": "0.2.0",
     "settings": {"model": "ffa", "flops_target": 0.58, ...},
     "phases": {"prune": 3.2, ...}}

``settings`` holds the *defining* settings of the command (the model and its weights, the
pruning target and allocator, the dreaming and distillation hyper-parameters, the seed: a
change would make the resumed run another run) and the *carried* ones (``steps``,
``checkpoint_every``, the evaluation set), which a resumed run reuses unless they are given
again. ``phases`` keeps the time of the one-time phases of earlier sessions, so that the
report of a resumed run describes the whole run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dreamprune_cli import __version__
from dreamprune_cli.errors import UsageError
from dreamprune_cli.fileio import write_json_atomic

RECORD_NAME = "run.json"

_MODEL = ("model", "variant", "model_kwargs", "weights", "non_strict", "random_weights")
_DREAMING = ("size", "batch_size", "clean_dir", "scenes", "noise_lr", "lambda_orth",
             "lambda_tv", "lambda_far", "far_pool", "representation", "seed", "dream_init")
ADVERSARIAL_FIELDS: tuple[str, ...] = ("adversarial_eps", "adversarial_steps")
"""The settings of ``--inputs adversarial``'s search: a run records them only on those
inputs (``dreamprune_cli.runkit.context.recorded_settings``); on others they are ignored."""

_DISTILLING = ("round_steps", "student_lr", "lambda_kd", "inputs", *ADVERSARIAL_FIELDS,
               "lr_schedule", "warmup_steps", "lr_min_ratio", "ema_decay",
               "lambda_feat", "feat_layers")

DEFINING: dict[str, tuple[str, ...]] = {
    "dream": (*_MODEL, *_DREAMING, "count", "steps"),
    "distill": (*_MODEL, *_DREAMING, *_DISTILLING, "student", "dreams"),
    "pipeline": (*_MODEL, *_DREAMING, *_DISTILLING, "flops_target", "latency_target",
                 "granularity", "allocator",
                 "channel_multiple", "flops_size",
                 "exclude", "default_exclude", "min_keep", "calibration_source",
                 "calibration_steps", "reconstruct", "reconstruct_count",
                 "reconstruct_size", "reconstruct_ridge", "prune_only"),
}
"""Settings a resumed run must keep (``dream``'s ``steps`` count per batch, so they define
the dreams; in ``distill`` and ``pipeline`` they are the total and may grow)."""

_SCORING = ("metric_space", "crop_border", "ssim_variant", "quantize", "tile", "tile_overlap")

CARRIED: dict[str, tuple[str, ...]] = {
    "dream": (),
    "distill": ("steps", "checkpoint_every", *_SCORING),
    "pipeline": ("steps", "checkpoint_every", "eval_input_dir", "eval_target_dir", "pairing",
                 "limit", *_SCORING),
}
"""Settings a resumed run takes from the record unless given again (they may change)."""


@dataclass
class RunRecord:
    """What ``run.json`` of a run folder says."""

    path: Path
    command: str
    settings: dict[str, Any]
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def locked(self) -> tuple[str, ...]:
        """The recorded fields a resumed run must not change."""
        return tuple(name for name in DEFINING[self.command] if name in self.settings)


def _plain(value: Any) -> Any:
    """JSON-ready form of a settings value; paths made absolute (a run may be resumed from
    another working directory)."""
    if isinstance(value, Path):
        return str(value.expanduser().resolve())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def record_settings(command: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The defining and carried fields of ``values`` (settings field -> value) for
    ``command``, as ``run.json`` stores them."""
    names = DEFINING[command] + CARRIED[command]
    return {name: _plain(values[name]) for name in names if name in values}


def write_run_record(folder: Path, command: str, settings: Mapping[str, Any],
                     phases: Mapping[str, float] | None = None) -> Path:
    """Write ``folder/run.json`` atomically (replacing an earlier one)."""
    data = {"command": command, "dreamprune": __version__, "settings": dict(settings),
            "phases": dict(phases or {})}
    return write_json_atomic(Path(folder) / RECORD_NAME, data, overwrite=True)


def read_run_record(folder: Path, command: str) -> RunRecord | None:
    """``run.json`` of the folder given to ``--resume``; ``None`` when the folder has none
    (written by a version that did not record its runs).

    Raises:
        UsageError: the folder does not exist, the record is unreadable, or it belongs to
            another subcommand.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"$resume {folder}: no such directory")
    path = folder / RECORD_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        recorded_command, settings = data["command"], dict(data["settings"])
        phases = {str(k): float(v) for k, v in dict(data.get("phases") or {}).items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"$resume {folder}: unreadable {RECORD_NAME} ({exc})") from None
    if recorded_command != command:
        raise UsageError(f"$resume {folder}: this folder was written by "
                         f"'dreamprune {recorded_command}', not '{command}'")
    if recorded_command not in DEFINING:
        raise UsageError(f"$resume {folder}: unknown command {recorded_command!r} in {path}")
    return RunRecord(path=path, command=command, settings=settings, phases=phases)


def same_value(a: Any, b: Any) -> bool:
    """Whether two settings values are equal once paths are made absolute."""
    return _plain(a) == _plain(b)


# What a folder of each command holds once it has started (older versions wrote no run.json).
RUN_FILES = {"pipeline": ("checkpoint.pt", "prune/student.safetensors", "report.json"),
             "distill": ("checkpoint.pt", "student.safetensors", "metrics.json"),
             "dream": ("state.pt", "dreams.safetensors", "manifest.json")}


def check_run_folder(folder: Path, command: str) -> None:
    """Refuse ``--resume`` on a folder that no ``command`` run wrote (it would be filled).

    Raises:
        UsageError: none of the files a started ``command`` run leaves is there.
    """
    expected = RUN_FILES.get(command, ())
    if expected and not any((folder / name).exists() for name in expected):
        raise UsageError(f"$resume {folder}: not a dreamprune {command} folder (no run.json, "
                         f"{', '.join(expected)}); start a new run with "
                         f"{'$save_dir' if command == 'dream' else '$out'} {folder}")
