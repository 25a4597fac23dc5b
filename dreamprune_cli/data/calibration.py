"""Calibration images for the adaptive allocator's drift measurement.

Either degraded images from a folder (``--calibration DIR``), cut into square patches, or,
without one, procedurally degraded images of the model's task
(:func:`dreamprune_cli.data.synthetic.make_degraded_batch`). The pipeline passes dreamed
images instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from dreamprune_cli.data.images import IMAGE_SUFFIXES, image_size, is_hidden, read_image
from dreamprune_cli.errors import UsageError

log = logging.getLogger(__name__)


def list_images(directory: Path) -> list[Path]:
    """Image files directly inside ``directory``, sorted by name (hidden files skipped)."""
    if not directory.is_dir():
        raise UsageError(f"$calibration {directory}: no such directory")
    files = sorted(p for p in directory.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not is_hidden(p.relative_to(directory)))
    if not files:
        raise UsageError(f"$calibration {directory}: no images "
                         f"(expected files ending in {', '.join(IMAGE_SUFFIXES)})")
    return files


def calibration_from_dir(directory: Path, count: int, size: int, seed: int) -> torch.Tensor:
    """``count`` random square patches of side ``size`` from the images in ``directory``.

    Patches cycle through the images in name order (the first ``count`` images when there
    are enough); their positions are drawn from ``seed``. Images smaller than ``size`` make
    every patch as large as the smallest side instead.

    Returns:
        ``(count, 3, side, side)`` float tensor in [0, 1].
    """
    files = list_images(directory)[:count]
    smallest = min(min(image_size(path)) for path in files)
    side = min(size, smallest)
    if side < size:
        log.warning("--calibration %s: the smallest image side is %d px; patches are %d px, "
                    "not %d", directory, smallest, side, size)
    generator = torch.Generator().manual_seed(seed)
    images = [read_image(path) for path in files]
    patches = []
    for index in range(count):
        image = images[index % len(images)]
        top = int(torch.randint(0, image.shape[1] - side + 1, (1,), generator=generator))
        left = int(torch.randint(0, image.shape[2] - side + 1, (1,), generator=generator))
        patches.append(image[:, top:top + side, left:left + side])
    return torch.stack(patches)


def synthetic_calibration(task: str, count: int, size: int, seed: int) -> torch.Tensor:
    """``count`` procedurally degraded ``size`` x ``size`` images for ``task``."""
    from dreamprune_cli.data.synthetic import make_degraded_batch

    degraded, _clean = make_degraded_batch(task, count, size, seed)
    return degraded
