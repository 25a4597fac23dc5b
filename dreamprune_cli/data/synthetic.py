"""Synthetic degraded/clean pairs: in memory, as folders, and the default evaluation sets.

A task names a synthesizer of :mod:`dreamprune_cli.data.degrade`: ``derain`` (rain
streaks), ``raindrop`` (adherent drops) and ``dehaze`` (haze). Clean images come from a
:class:`~dreamprune_cli.data.clean.CleanSource` (procedural dead-leaves scenes by default).

Folders use the Rain13k layout that ``evaluate`` reads: ``input/NNNN.png`` (degraded),
``target/NNNN.png`` (clean), plus ``manifest.json`` with the parameters of every image.
Image ``i`` of a folder depends only on the seed and ``i`` (its own generator), so a larger
``count`` extends a set without changing the images already in it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from dreamprune_cli.data.clean import (CleanSource, DepthSource, ProceduralSource,
                                        make_clean_source)
from dreamprune_cli.data.degrade import Params, haze, rain_streaks, raindrops
from dreamprune_cli.data.images import write_png
from dreamprune_cli.errors import UsageError
from dreamprune_cli.fileio import ensure_output_dir, write_json_atomic
from dreamprune_cli.progress import NullProgress, ProgressSink

log = logging.getLogger(__name__)

SynthTask = Literal["derain", "raindrop", "dehaze"]
TASKS: tuple[str, ...] = ("derain", "raindrop", "dehaze")
SYNTHESIZERS: dict[str, Callable[..., tuple[torch.Tensor, Params]]] = {
    "derain": rain_streaks, "raindrop": raindrops, "dehaze": haze,
}
# Bump when the generator or a synthesizer changes what a seed produces: cached sets are
# keyed by it, so an upgrade never evaluates on stale images.
SYNTH_VERSION = 1
# The default evaluation set of each task (``evaluate`` without folders).
TEST_SET_COUNT = 12
TEST_SET_SIZE = 128
TEST_SET_SEED = 2024
CACHE_ENV = "DREAMPRUNE_CACHE"


def check_task(task: str) -> str:
    """``task`` if it has a synthesizer; ``identity`` maps to ``derain``."""
    if task == "identity":
        return "derain"
    if task not in SYNTHESIZERS:
        raise UsageError(f"$task {task!r}: expected one of {', '.join(TASKS)}")
    return task


def degrade_batch(task: str, clean: torch.Tensor, generator: torch.Generator | None = None,
                  **params: Any) -> tuple[torch.Tensor, Params]:
    """Degrade ``clean`` ``(N, 3, H, W)`` with ``task``'s synthesizer (random parameters
    unless given in ``params``)."""
    return SYNTHESIZERS[check_task(task)](clean, generator, **params)


def make_degraded_batch(task: str, count: int, size: int, seed: int,
                        clean_source: CleanSource | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(degraded, clean)``, each ``(count, 3, size, size)`` in [0, 1], fixed by ``seed``.

    Procedural clean scenes (or ``clean_source``'s images) degraded by ``task``'s
    synthesizer with random parameters; used as calibration data when no dreamed images
    exist, and as the student's inputs of ``--inputs synthetic``.
    """
    if count < 1 or size < 8:
        raise UsageError(f"synthetic batch: need count >= 1 and size >= 8, got {count}, {size}")
    generator = torch.Generator().manual_seed(seed)
    degraded, clean, _ = sample_degraded(task, clean_source or ProceduralSource(), count, size,
                                         generator)
    return degraded, clean


def sample_degraded(task: str, source: CleanSource, count: int, size: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, Params]:
    """``(degraded, clean, params)`` from ``source``: haze follows the scene's own depth when
    the source knows it (a :class:`~dreamprune_cli.data.clean.DepthSource` such as the
    ``rooms`` scenes), else the synthesizer's random depth."""
    if check_task(task) == "dehaze" and isinstance(source, DepthSource):
        clean, depth = source.sample_with_depth(count, size, generator)
        degraded, params = degrade_batch(task, clean, generator, depth=depth)
        return degraded, clean, params
    clean = source.sample(count, size, generator)
    degraded, params = degrade_batch(task, clean, generator)
    return degraded, clean, params


def image_generator(seed: int, index: int) -> torch.Generator:
    """The generator of image ``index`` of a set with ``seed`` (independent streams)."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def write_synthetic_set(task: str, count: int, size: int, seed: int, out: Path,
                        clean_dir: Path | None = None, overwrite: bool = False,
                        scenes: str = "leaves",
                        progress: ProgressSink | None = None) -> dict[str, Any]:
    """Write ``count`` pairs into ``out/input``, ``out/target`` and ``out/manifest.json``.

    Args:
        task: ``derain``, ``raindrop`` or ``dehaze``.
        count, size: number of pairs and their side in pixels.
        seed: fixes every image (same seed, same bytes).
        out: destination folder; must be empty or absent unless ``overwrite``.
        clean_dir: crop clean images from this folder instead of rendering them.
        scenes: the procedural scenes without ``clean_dir``: ``leaves`` or ``rooms``.
        overwrite: write into a non-empty ``out`` (replacing files of the same names).
        progress: receives one update per pair.

    Returns:
        The manifest (also written to ``out/manifest.json``).
    """
    task = check_task(task)
    if count < 1:
        raise UsageError(f"$count {count}: expected at least 1")
    if size < 8:
        raise UsageError(f"$size {size}: expected at least 8 pixels")
    if seed < 0:
        raise UsageError(f"$seed {seed}: expected a non-negative integer")
    source: CleanSource = make_clean_source(clean_dir, scenes)
    ensure_output_dir(out, overwrite)
    progress = progress or NullProgress()
    images = []
    progress.start(f"synth {task}", count, "images")
    for index in range(count):
        generator = image_generator(seed, index)
        degraded, clean, params = sample_degraded(task, source, 1, size, generator)
        name = f"{index:04d}"
        write_png(out / "input" / f"{name}.png", degraded[0], overwrite=overwrite)
        write_png(out / "target" / f"{name}.png", clean[0], overwrite=overwrite)
        images.append({"name": name, "params": {k: v[0] for k, v in params.items()}})
        progress.update(index + 1)
    progress.finish()
    manifest = {"task": task, "count": count, "size": size, "seed": seed,
                "clean": str(clean_dir) if clean_dir is not None else
                "procedural" if scenes == "leaves" else f"procedural {scenes}",
                "version": SYNTH_VERSION, "input_dir": "input", "target_dir": "target",
                "images": images}
    write_json_atomic(out / "manifest.json", manifest, overwrite=overwrite)
    return manifest


def cache_dir() -> Path:
    """``$DREAMPRUNE_CACHE``, else ``~/.cache/dreamprune``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "dreamprune"


def synthetic_test_set(task: str, count: int = TEST_SET_COUNT, size: int = TEST_SET_SIZE,
                       seed: int = TEST_SET_SEED, root: Path | None = None) -> tuple[Path, Path]:
    """``(input_dir, target_dir)`` of the default evaluation set of ``task``.

    The set (by default 12 procedural scenes of 128 x 128, seed 2024) is written once into
    the cache (:func:`cache_dir`), in a temporary folder renamed into place, so concurrent
    callers and interrupted runs never see a partial set.
    """
    task = check_task(task)
    root = root or cache_dir()
    final = root / f"synthetic-v{SYNTH_VERSION}" / f"{task}-n{count}-s{size}-seed{seed}"
    if not (final / "manifest.json").is_file():
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            write_synthetic_set(task, count, size, seed, tmp, overwrite=True)
            if final.exists() and not (final / "manifest.json").is_file():
                shutil.rmtree(final)  # an incomplete set left by an older version
            try:
                os.replace(tmp, final)
            except OSError:
                if not (final / "manifest.json").is_file():  # not a concurrent winner
                    raise
            log.info("wrote the synthetic %s evaluation set to %s", task, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final / "input", final / "target"
