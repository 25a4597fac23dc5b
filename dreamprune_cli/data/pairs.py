"""Pairing degraded inputs with their targets, as the field's test sets lay them out.

Three pairing modes (:data:`Pairing`), each over an input folder and a target folder:

* ``stem``: the same file stem on both sides (the Rain13k ``input/`` + ``target/`` layout;
  the extensions may differ).
* ``rain100``: Rain100L/H's original names, rainy ``rain-NNN`` with clean ``norain-NNN``;
  files that already share a stem also pair. The two folders may be one folder holding both
  (PReNet's ``datasets/test/Rain100L``): then only ``rain-*`` files are inputs.
* ``sots``: RESIDE SOTS names, hazy ``S_L`` (e.g. ``1400_2.png``; outdoor
  ``0001_0.8_0.2.jpg``) with clean ``S`` (``1400.png``), the part before the first ``_`` as
  FFA-Net's loader takes it, several hazy images per clean one; a hazy image whose own stem is among
  the targets pairs with that file. A clean image larger than its hazy image (SOTS-indoor's
  are 10 px larger on each side) is centre-cropped to the hazy size when read, as FFA-Net's
  loader does (``torchvision``'s ``CenterCrop``: offset ``round((H - h) / 2)``).

The pair's name is the input's stem (restorations are saved under it). Every problem
(unpaired files, size mismatches) is reported in one error before any model runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from dreamprune_cli.data.images import IMAGE_SUFFIXES, image_size, is_hidden, read_image
from dreamprune_cli.errors import UsageError

Pairing = Literal["stem", "rain100", "sots"]
PAIRINGS: tuple[str, ...] = ("stem", "rain100", "sots")

_RAIN100_INPUT = re.compile(r"rain-(.+)")
_RAIN100_TARGET = re.compile(r"norain-(.+)")
_SOTS_INPUT = re.compile(r"([^_]+)_.+")  # the clean id is the part before the first "_"


@dataclass(frozen=True)
class ImagePair:
    """One degraded image and its clean target.

    ``target_crop`` is ``(top, left, height, width)`` when only that window of the target
    file is the target (SOTS's larger clean images), else ``None``.
    """

    name: str
    input_path: Path
    target_path: Path
    target_crop: tuple[int, int, int, int] | None = None


def read_pair(pair: ImagePair) -> tuple[torch.Tensor, torch.Tensor]:
    """The degraded image and its target, ``(3, H, W)`` float32 in [0, 1], same size.

    Raises:
        UsageError: a file is missing or not an image (see :func:`read_image`).
    """
    degraded, target = read_image(pair.input_path), read_image(pair.target_path)
    if pair.target_crop is not None:
        top, left, height, width = pair.target_crop
        target = target[:, top:top + height, left:left + width].contiguous()
    return degraded, target


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of ``name`` in natural order: runs of digits compare as numbers, the rest
    case-insensitively as text (``rain-2`` before ``rain-10``; ``1, 2, ..., 12``). Pairs,
    ``--limit`` and the rows of ``grid.png`` follow this order."""
    return tuple((0, int(part)) if part.isdigit() else (1, part.lower())
                 for part in re.split(r"(\d+)", name) if part)


def natural_sorted(names: list[str]) -> list[str]:
    """``names`` in :func:`natural_key` order (ties: plain text order, so it is total)."""
    return sorted(names, key=lambda name: (natural_key(name), name))


def list_images(folder: Path, role: str) -> dict[str, Path]:
    """Images in ``folder`` (not recursive) keyed by stem; ``role`` names the flag in errors."""
    if not folder.exists():
        raise UsageError(f"{role} {folder}: no such directory")
    if not folder.is_dir():
        raise UsageError(f"{role} {folder}: not a directory")
    images: dict[str, Path] = {}
    duplicates: list[str] = []
    for path in sorted(folder.iterdir()):
        if is_hidden(path.relative_to(folder)):  # ._x.png (AppleDouble), .x.png: skipped
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            if path.stem in images:
                duplicates.append(path.name)
            images[path.stem] = path
    if duplicates:
        raise UsageError(f"{role} {folder}: several files share a stem: {', '.join(duplicates[:10])}")
    if not images:
        raise UsageError(f"{role} {folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return images


def _center_crop(target: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, height, width)`` of a centred ``size`` window in ``target``."""
    return (int(round((target[0] - size[0]) / 2.0)), int(round((target[1] - size[1]) / 2.0)),
            size[0], size[1])


def _match(stem: str, targets: dict[str, Path], pairing: Pairing) -> str | None:
    """The target stem ``stem`` pairs with under ``pairing``, or ``None``."""
    if stem in targets:
        return stem
    pattern = {"stem": None, "rain100": _RAIN100_INPUT, "sots": _SOTS_INPUT}[pairing]
    found = pattern.fullmatch(stem) if pattern is not None else None
    if found is None:
        return None
    candidate = f"norain-{found.group(1)}" if pairing == "rain100" else found.group(1)
    return candidate if candidate in targets else None


def _listing(label: str, names: list[str], total: int) -> str:
    more = f" (+{total - len(names)} more)" if total > len(names) else ""
    return f"{label} {', '.join(names)}{more}"


def pair_folders(input_dir: Path, target_dir: Path, limit: int | None = None,
                 pairing: Pairing = "stem") -> list[ImagePair]:
    """Pair the images of ``input_dir`` with those of ``target_dir`` (see the module doc).

    Sizes are checked from the file headers up front: equal, or (``sots``) a target at least
    as large in both sides, centre-cropped. The pairs are in natural input-name order
    (:func:`natural_key`: ``2`` before ``10``); ``limit`` keeps the first N of them.

    Raises:
        UsageError: a folder is missing or empty, both name the same folder (except
            ``rain100``, whose one-folder layout is PReNet's), files stay unpaired, sizes
            differ, or ``pairing`` is unknown.
    """
    if pairing not in PAIRINGS:
        raise UsageError(f"$pairing {pairing!r}: expected one of {', '.join(PAIRINGS)}")
    inputs = list_images(Path(input_dir), "$input_dir")
    targets = list_images(Path(target_dir), "$target_dir")
    if Path(input_dir).resolve() == Path(target_dir).resolve():
        if pairing != "rain100":
            raise UsageError(
                f"$input_dir and $target_dir are the same folder ({Path(input_dir).resolve()}):"
                " every image would be scored against itself; give the clean images' folder"
                " as $target_dir (or $pairing rain100 for rain-NNN/norain-NNN in one folder)")
        inputs = {stem: path for stem, path in inputs.items() if _RAIN100_INPUT.fullmatch(stem)}
        targets = {stem: path for stem, path in targets.items()
                   if _RAIN100_TARGET.fullmatch(stem)}
    matched = {stem: _match(stem, targets, pairing) for stem in natural_sorted(list(inputs))}
    only_input = [inputs[s].name for s, t in matched.items() if t is None]
    used = set(matched.values())
    only_target = [targets[t].name for t in natural_sorted(list(targets)) if t not in used]
    names = [s for s, t in matched.items() if t is not None]
    if limit is not None:
        names = names[:limit]
    problems: list[str] = []
    if only_input:
        problems.append(_listing("no target for", only_input[:10], len(only_input)))
    if only_target:
        problems.append(_listing("no input for", only_target[:10], len(only_target)))
    pairs: list[ImagePair] = []
    mismatched: list[str] = []
    for name in names:
        target = matched[name]
        assert target is not None
        size_in, size_tg = image_size(inputs[name]), image_size(targets[target])
        crop = None
        if size_in != size_tg:
            if pairing == "sots" and size_tg[0] >= size_in[0] and size_tg[1] >= size_in[1]:
                crop = _center_crop(size_tg, size_in)
            else:
                mismatched.append(f"{name} ({size_in[0]}x{size_in[1]} vs "
                                  f"{size_tg[0]}x{size_tg[1]})")
        pairs.append(ImagePair(name, inputs[name], targets[target], crop))
    if mismatched:
        problems.append(_listing("size mismatch:", mismatched[:10], len(mismatched)))
    if problems:
        hint = " (for Rain100's rain-NNN/norain-NNN or SOTS's S_L/S names, see $pairing)" \
            if pairing == "stem" and (only_input or only_target) else ""
        raise UsageError(f"cannot pair {input_dir} with {target_dir}: " + "; ".join(problems)
                         + hint)
    return pairs
