"""The teacher's scores, cached across pipeline runs (and ``--resume``).

Scoring the teacher on a real evaluation set is the same work in every run that compresses
it, so the pipeline keeps its :class:`~dreamprune_cli.engine.evaluate.EvaluationResult` in
``<cache>/teacher-scores/<key>.json`` (``<cache>``: :func:`cache_dir`). The key is the SHA-256
of everything the scores depend on:

* the teacher: its weights file's SHA-256, model name and config;
* the evaluation set: per pair, the input and target names, byte sizes, modification times
  (ns) and target crop, in the pairs' order (a ``--limit`` keeps fewer pairs: another key);
* the protocol: metric space, crop border, SSIM variant, quantization, tiling, limit;
* the device type and the dreamprune version (the scoring code).

Only a teacher loaded from a file is cached (random weights are not), and only on
evaluation folders (``eval_input_dir``; the synthetic test set is small and shared by tests).
On a hit the first ``keep_outputs`` restorations (for ``grid.png``) are restored again, not
scored. Under torchrun only rank 0 writes. Entries are written atomically; an unreadable
entry is recomputed (and replaced).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli import __version__
from dreamprune_cli.data.pairs import ImagePair, read_pair
from dreamprune_cli.engine.evaluate import EvaluationResult, ImageScore, restore
from dreamprune_cli.fileio import write_json_atomic
from dreamprune_cli.metrics import quantize_8bit

log = logging.getLogger(__name__)

CACHE_FOLDER = "teacher-scores"


def cache_dir() -> Path:
    """``$DREAMPRUNE_CACHE_DIR``, else ``$DREAMPRUNE_CACHE`` (the synthetic sets' cache),
    else ``$XDG_CACHE_HOME/dreamprune``, else ``~/.cache/dreamprune``."""
    for variable in ("DREAMPRUNE_CACHE_DIR", "DREAMPRUNE_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "dreamprune"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_identity(path: Path) -> list[Any]:
    stat = path.stat()
    return [path.name, stat.st_size, stat.st_mtime_ns]


def score_key(weights: Path, model: str, config: dict[str, Any], pairs: Sequence[ImagePair],
              protocol: dict[str, Any], limit: int | None, device: torch.device) -> dict[str, Any]:
    """What the teacher's scores depend on (see the module doc), as plain JSON values."""
    tiling = protocol.get("tiling")
    return {
        "weights_sha256": file_sha256(weights), "model": model,
        "config": json.loads(json.dumps(config, sort_keys=True, default=str)),
        "pairs": [[pair.name, *_file_identity(pair.input_path),
                   *_file_identity(pair.target_path),
                   list(pair.target_crop) if pair.target_crop else None] for pair in pairs],
        "metric_space": protocol["metric_space"], "crop_border": protocol["crop_border"],
        "ssim_variant": protocol["ssim_variant"], "quantization": protocol["quantization"],
        "tile": None if tiling is None else [tiling.tile, tiling.overlap],
        "limit": limit, "device": device.type, "dreamprune": __version__}


def key_digest(key: dict[str, Any]) -> str:
    """The entry's file stem: SHA-256 of the key's canonical JSON (first 32 hex digits)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


def _number(value: Any) -> float:
    """A score as JSON holds it (``"inf"``, ``"-inf"``, ``null`` for NaN) as a float."""
    return math.nan if value is None else float(value)


def result_from_dict(data: dict[str, Any]) -> EvaluationResult:
    """The inverse of :meth:`EvaluationResult.as_dict` after a JSON round trip (without the
    kept ``outputs``).

    Raises:
        KeyError, TypeError, ValueError: ``data`` is not such a dictionary.
    """
    names = {f.name for f in fields(EvaluationResult)} - {"outputs", "per_image"}
    values = {name: data[name] for name in names if name in data}
    for name in ("psnr", "ssim"):
        values[name] = _number(values[name])
    per_image = [ImageScore(str(s["name"]), _number(s["psnr"]), _number(s["ssim"]))
                 for s in data["per_image"]]
    return EvaluationResult(**values, per_image=per_image)


@dataclass
class CachedScores:
    """Where a run's teacher scores came from: ``hit`` (reused), ``path`` (the entry;
    ``None`` when not cached) and ``computed`` (when the entry was computed, UTC)."""

    hit: bool = False
    path: Path | None = None
    computed: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"hit": self.hit, "path": self.path, "computed": self.computed}


def _read_entry(path: Path, key: dict[str, Any]) -> tuple[EvaluationResult, str] | None:
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        if entry["key"] != key:  # a digest collision, or a hand-edited file
            return None
        return result_from_dict(entry["result"]), str(entry["computed"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("%s: unreadable cache entry (%s); scoring the teacher again", path, exc)
        return None


def _restore_outputs(model: torch.nn.Module, pairs: Sequence[ImagePair], count: int,
                     protocol: dict[str, Any], device: torch.device) -> list[torch.Tensor]:
    """The first ``count`` restorations as :func:`evaluate_pairs` keeps them (8-bit levels)."""
    model = model.to(device).eval()
    outputs = []
    for pair in pairs[:count]:
        degraded, _ = read_pair(pair)
        restored = restore(model, degraded, device, protocol.get("tiling"))
        outputs.append(quantize_8bit(restored, protocol["quantization"]))
    return outputs


def teacher_scores(evaluate: Callable[[], EvaluationResult], model: torch.nn.Module,
                   weights: Path | None, name: str, config: dict[str, Any],
                   pairs: Sequence[ImagePair], protocol: dict[str, Any], limit: int | None,
                   device: torch.device, *, enabled: bool, writer: bool,
                   keep_outputs: int = 0) -> tuple[EvaluationResult, CachedScores]:
    """The teacher's scores: from the cache when an entry fits (logged
    ``teacher scores reused from PATH (computed DATE)``), else ``evaluate()``, stored when
    ``writer`` (rank 0). Not cached when ``enabled`` is false or ``weights`` is ``None``.

    Args:
        evaluate: scores the teacher (the pipeline's timed :func:`evaluate_pairs` call).
        model: the teacher's adapter, to restore the kept outputs on a hit.
        weights: the teacher's weights file.
        keep_outputs: restorations to keep (``grid.png``), as :func:`evaluate_pairs`.
    """
    if not enabled or weights is None or not Path(weights).is_file():
        return evaluate(), CachedScores()
    key = score_key(Path(weights), name, config, pairs, protocol, limit, device)
    path = cache_dir() / CACHE_FOLDER / f"{key_digest(key)}.json"
    found = _read_entry(path, key)
    if found is not None:
        result, computed = found
        log.info("teacher scores reused from %s (computed %s)", path, computed)
        result.outputs = _restore_outputs(model, pairs, keep_outputs, protocol, device)
        return result, CachedScores(True, path, computed)
    result = evaluate()
    computed = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if writer:
        try:
            write_json_atomic(path, {"key": key, "computed": computed,
                                     "result": result.as_dict()}, overwrite=True)
            log.debug("teacher scores cached in %s", path)
        except Exception as exc:  # a cache that cannot be written must not stop the run
            log.warning("teacher scores not cached in %s: %s", path, exc)
            return result, CachedScores(False, None, None)
    return result, CachedScores(False, path, computed)
