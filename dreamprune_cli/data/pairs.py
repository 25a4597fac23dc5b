"""Pairing degraded inputs with their targets (the Rain13k ``input/`` + ``target/`` layout)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dreamprune_cli.data.images import IMAGE_SUFFIXES, image_size, is_hidden
from dreamprune_cli.errors import UsageError


@dataclass(frozen=True)
class ImagePair:
    """One degraded image and its clean target, matched by file stem."""

    name: str
    input_path: Path
    target_path: Path


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


def pair_folders(input_dir: Path, target_dir: Path, limit: int | None = None) -> list[ImagePair]:
    """Match images of ``input_dir`` and ``target_dir`` by stem, checking sizes up front.

    Every unpaired file and every size mismatch is reported together in one error, before
    any model runs. ``limit`` keeps the first N pairs in name order.
    """
    inputs = list_images(Path(input_dir), "--input-dir")
    targets = list_images(Path(target_dir), "--target-dir")
    only_input = sorted(set(inputs) - set(targets))
    only_target = sorted(set(targets) - set(inputs))
    names = sorted(set(inputs) & set(targets))
    if limit is not None:
        names = names[:limit]
    problems: list[str] = []
    if only_input:
        problems.append(f"no target for {', '.join(inputs[n].name for n in only_input[:10])}"
                        + (f" (+{len(only_input) - 10} more)" if len(only_input) > 10 else ""))
    if only_target:
        problems.append(f"no input for {', '.join(targets[n].name for n in only_target[:10])}"
                        + (f" (+{len(only_target) - 10} more)" if len(only_target) > 10 else ""))
    mismatched = []
    for name in names:
        size_in, size_tg = image_size(inputs[name]), image_size(targets[name])
        if size_in != size_tg:
            mismatched.append(f"{name} ({size_in[0]}x{size_in[1]} vs {size_tg[0]}x{size_tg[1]})")
    if mismatched:
        problems.append(f"size mismatch: {', '.join(mismatched[:10])}"
                        + (f" (+{len(mismatched) - 10} more)" if len(mismatched) > 10 else ""))
    if problems:
        raise UsageError(f"cannot pair {input_dir} with {target_dir}: " + "; ".join(problems))
    return [ImagePair(n, inputs[n], targets[n]) for n in names]
