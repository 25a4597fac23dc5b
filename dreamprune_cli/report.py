"""Pictures and documents for people: image grids, loss curves, CSV and Markdown reports.

Drawn with Pillow (no plotting dependency); every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from dreamprune_cli.data.images import to_uint8
from dreamprune_cli.fileio import atomic_write, write_text_atomic

_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def save_grid(path: Path, rows: Sequence[Sequence[torch.Tensor]], overwrite: bool = False,
              gap: int = 2) -> Path:
    """Tile ``rows`` of ``(3, H, W)`` images (same size) into one PNG with white gaps."""
    if not rows or not rows[0]:
        raise ValueError("a grid needs at least one image")
    height, width = rows[0][0].shape[-2:]
    columns = max(len(row) for row in rows)
    canvas = Image.new("RGB", (columns * (width + gap) - gap, len(rows) * (height + gap) - gap),
                       "white")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            canvas.paste(Image.fromarray(to_uint8(image)), (c * (width + gap), r * (height + gap)))
    return atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"), overwrite)


def save_curves(path: Path, series: Mapping[str, Sequence[float]], title: str = "",
                overwrite: bool = False, size: tuple[int, int] = (640, 360)) -> Path:
    """Line chart of each series against its step index, log10 y-axis, one colour each."""
    width, height = size
    left, right, top, bottom = 60, 110, 24, 30
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    values = [v for s in series.values() for v in s if v > 0 and math.isfinite(v)]
    if values:
        low, high = math.log10(min(values)), math.log10(max(values))
        if high - low < 1e-6:
            low, high = low - 0.5, high + 0.5
        longest = max(len(s) for s in series.values())
        draw.rectangle((left, top, width - right, height - bottom), outline="black")
        for k in range(5):
            y_value = low + (high - low) * k / 4
            y = height - bottom - (height - top - bottom) * k / 4
            draw.text((4, y - 6), f"{10 ** y_value:.2g}", fill="black")
        draw.text((left, height - bottom + 6), "0", fill="black")
        draw.text((width - right - 30, height - bottom + 6), str(longest), fill="black")
        for index, (name, points) in enumerate(series.items()):
            colour = _COLOURS[index % len(_COLOURS)]
            xy = []
            for step, value in enumerate(points):
                if value > 0 and math.isfinite(value):
                    x = left + (width - left - right) * step / max(longest - 1, 1)
                    y = height - bottom - (height - top - bottom) * (
                        (math.log10(value) - low) / (high - low))
                    xy.append((x, y))
            if len(xy) > 1:
                draw.line(xy, fill=colour, width=1)
            draw.text((width - right + 8, top + 14 * index), name, fill=colour)
    draw.text((left, 4), title, fill="black")
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"), overwrite)


def save_history_csv(path: Path, history: Sequence[Mapping[str, float]],
                     overwrite: bool = False) -> Path:
    """One row per step, columns from the first record."""
    buffer = io.StringIO()
    if history:
        writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    return write_text_atomic(path, buffer.getvalue(), overwrite)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table (floats with 4 decimals)."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            return "inf" if value == float("inf") else f"{value:.4f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_loss_history(folder: Path, history: Sequence[Mapping[str, float]], title: str,
                      keys: Sequence[str] = ("dream", "orth", "kd")) -> None:
    """``losses.csv`` and ``losses.png`` of a training history (keys it lacks are skipped)."""
    save_history_csv(folder / "losses.csv", history, overwrite=True)
    present = [k for k in keys if history and k in history[0]]
    save_curves(folder / "losses.png", {k: [h[k] for h in history] for k in present},
                title=title, overwrite=True)
