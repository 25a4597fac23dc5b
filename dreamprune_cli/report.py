"""Pictures and documents for people: result tables, image grids, loss curves, CSV and
Markdown reports.

A run's result rows are built once, as a :class:`ResultTable`; the command line's table,
``report.md`` and the ``--json`` object are views of the same result. Grids are drawn with Pillow (labelled columns and rows); loss curves with matplotlib (its
object-oriented API and the Agg canvas, no global pyplot state). Every file is written
atomically.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, ImageFont

from dreamprune_cli.data.images import to_uint8
from dreamprune_cli.fileio import atomic_write, write_text_atomic

@dataclass(frozen=True)
class ResultTable:
    """Rows of a result for people: a title, column names, rows of cells (numbers stay
    numbers; each view formats them) and an optional caption line."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    caption: str | None = None

    def markdown(self) -> str:
        """The rows as a GitHub-flavoured Markdown table (:func:`markdown_table`)."""
        return markdown_table(self.columns, self.rows)


LABEL_SIZE = 14
"""Font size (px) of grid labels."""


def _font(size: int = LABEL_SIZE) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled scalable font (needs FreeType), else its small bitmap font."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow < 10.1 or no FreeType
        return ImageFont.load_default()


def _text_width(draw: ImageDraw.ImageDraw, text: str, font: object) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)  # type: ignore[arg-type]
    return int(right - left)


def _fit(draw: ImageDraw.ImageDraw, text: str, font: object, width: int) -> list[str]:
    """Break ``text`` at spaces into lines no wider than ``width`` px (never cut a word)."""
    lines: list[str] = []
    for word in text.split():
        if lines and _text_width(draw, f"{lines[-1]} {word}", font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


MAX_TILE = 256
"""Longest side (px) of a grid cell by default: real photographs are shrunk to it."""
MAX_GRID_WIDTH = 2048
"""Widest grid (px) by default: cells shrink further when the columns would not fit."""


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """The centred ``size`` x ``size`` window of a ``(C, H, W)`` image (each side at most
    the image's own; offsets ``(H - h) // 2``, ``(W - w) // 2``)."""
    height, width = image.shape[-2:]
    h, w = min(size, height), min(size, width)
    top, left = (height - h) // 2, (width - w) // 2
    return image[..., top:top + h, left:left + w]


def grid_scale(sizes: Sequence[tuple[int, int]], columns: int, margin: int, gap: int,
               min_tile: int, max_tile: int | None, max_width: int | None) -> float:
    """The one factor every ``(height, width)`` tile is resized by: a whole factor up to
    ``min_tile`` px wide for small tiles (pixels stay visible as blocks), else down so that
    the longest side is at most ``max_tile`` and ``margin + columns`` cells (with their
    ``gap``) fit in ``max_width`` px; 1 when neither applies."""
    widest = max(w for _, w in sizes)
    longest = max(max(h, w) for h, w in sizes)
    if min_tile > 0 and widest < min_tile:
        factor = float(math.ceil(min_tile / widest))
    else:
        factor = min(1.0, max_tile / longest) if max_tile else 1.0
    if max_width:
        room = max_width - margin - (columns - 1) * gap
        factor = min(factor, max(room, columns) / (columns * widest))
    return factor


def _scaled(length: int, factor: float) -> int:
    """``length`` px times ``factor``, rounded down (never past a bound), at least 1."""
    return max(1, math.floor(length * factor + 1e-6))


def save_grid(path: Path, rows: Sequence[Sequence[torch.Tensor]], overwrite: bool = False,
              gap: int = 2, column_labels: Sequence[str] | None = None,
              row_labels: Sequence[str] | None = None, min_tile: int = 96,
              max_tile: int | None = MAX_TILE, max_width: int | None = MAX_GRID_WIDTH,
              crop: int | None = None, title: str | None = None) -> Path:
    """Tile ``rows`` of ``(3, H, W)`` float images in [0, 1] into one PNG.

    ``crop``: each image's centred ``crop`` x ``crop`` window (:func:`center_crop`) instead
    of the whole image, for detail. Every tile is then resized by one factor
    (:func:`grid_scale`): tiles narrower than ``min_tile`` px are enlarged by a whole factor
    with nearest-neighbour sampling, larger ones shrunk (Lanczos, aspect kept) to at most
    ``max_tile`` px on their longest side and so that the grid is at most ``max_width`` px
    wide (``None``: no bound). Tiles of different sizes are centred in cells of the largest.
    ``column_labels`` are written above the columns (wrapped at spaces to the column width),
    ``row_labels`` (e.g. image names) in a margin on the left, ``title`` in a line above
    everything; all in Pillow's default font at :data:`LABEL_SIZE` px.

    Raises:
        ValueError: no images, a label list whose length does not match, or ``crop < 1``.
    """
    if not rows or not rows[0]:
        raise ValueError("a grid needs at least one image")
    if crop is not None and crop < 1:
        raise ValueError(f"grid crop {crop}: expected a size of at least 1 px")
    columns = max(len(row) for row in rows)
    if column_labels is not None and len(column_labels) != columns:
        raise ValueError(f"{len(column_labels)} column labels for {columns} columns")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"{len(row_labels)} row labels for {len(rows)} rows")
    images = [[center_crop(image, crop) if crop else image for image in row] for row in rows]
    sizes = [(int(image.shape[-2]), int(image.shape[-1])) for row in images for image in row]
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_height = LABEL_SIZE + 3
    left = (max(_text_width(measure, label, font) for label in row_labels) + 8) \
        if row_labels else 0
    factor = grid_scale(sizes, columns, left, gap, min_tile, max_tile, max_width)
    height = _scaled(max(h for h, _ in sizes), factor)
    width = _scaled(max(w for _, w in sizes), factor)
    wrapped = [_fit(measure, label, font, width) for label in column_labels or []]
    head = (line_height + 4) if title else 0
    top = head + ((max(len(lines) for lines in wrapped) * line_height + 4) if wrapped else 0)
    grid_width = left + columns * (width + gap) - gap
    if title:
        grid_width = max(grid_width, _text_width(measure, title, font) + 4)
    canvas = Image.new("RGB", (grid_width, top + len(rows) * (height + gap) - gap), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((2, 2), title, fill="black", font=font)
    for c, lines in enumerate(wrapped):
        for k, line in enumerate(lines):
            x = left + c * (width + gap) + (width - _text_width(draw, line, font)) // 2
            draw.text((x, head + 2 + k * line_height), line, fill="black", font=font)
    for r, row in enumerate(images):
        y = top + r * (height + gap)
        if row_labels:
            draw.text((2, y + (height - LABEL_SIZE) // 2), row_labels[r], fill="black",
                      font=font)
        for c, image in enumerate(row):
            tile = Image.fromarray(to_uint8(image))
            if factor != 1.0:
                size = (_scaled(tile.width, factor), _scaled(tile.height, factor))
                tile = tile.resize(size, Image.Resampling.NEAREST if factor > 1
                                   else Image.Resampling.LANCZOS)
            canvas.paste(tile, (left + c * (width + gap) + (width - tile.width) // 2,
                                y + (height - tile.height) // 2))
    return atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"), overwrite)


def loss_figure(series: Mapping[str, Sequence[float]], title: str = "",
                size: tuple[int, int] = (720, 400), xlabel: str = "step",
                ylabel: str = "loss (log scale)") -> Any:
    """A matplotlib ``Figure``: each series against its step (1, 2, ...), log y-axis, axis
    labels, a legend and ``title``; ``size`` in pixels at 100 dpi. Non-positive or
    non-finite values are left out (a log axis cannot show them)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dpi = 100
    figure = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    plotted = False
    for name, points in series.items():
        steps = [i + 1 for i, v in enumerate(points) if v > 0 and math.isfinite(v)]
        values = [v for v in points if v > 0 and math.isfinite(v)]
        if values:
            axes.plot(steps, values, label=name, linewidth=1)
            plotted = True
    if plotted:
        axes.set_yscale("log")
        axes.legend(loc="upper right")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    figure.tight_layout()
    return figure


def save_curves(path: Path, series: Mapping[str, Sequence[float]], title: str = "",
                overwrite: bool = False, size: tuple[int, int] = (720, 400),
                xlabel: str = "step", ylabel: str = "loss (log scale)") -> Path:
    """Write :func:`loss_figure` as a PNG of ``size`` pixels."""
    figure = loss_figure(series, title, size, xlabel, ylabel)
    return atomic_write(path, lambda tmp: figure.savefig(tmp, format="png"), overwrite)


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
                      keys: Sequence[str] = ("dream", "orth", "kd", "feat")) -> None:
    """``losses.csv`` and ``losses.png`` of a training history (keys it lacks are skipped)."""
    save_history_csv(folder / "losses.csv", history, overwrite=True)
    present = [k for k in keys if history and k in history[0]]
    names = {"dream": "dream (L_dream)", "orth": "orth (L_orth)", "kd": "kd (L_KD)",
             "feat": "feat (L_feat)"}
    save_curves(folder / "losses.png",
                {names.get(k, k): [h[k] for h in history] for k in present},
                title=title, overwrite=True)
