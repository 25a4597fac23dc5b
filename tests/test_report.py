"""Pictures people can read: labelled grid columns and rows, labelled loss-plot axes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dreamprune_cli.report import loss_figure, save_curves, save_grid


def _tiles(rows: int, columns: int, size: int = 32) -> list[list[torch.Tensor]]:
    return [[torch.full((3, size, size), 0.5) for _ in range(columns)] for _ in range(rows)]


def test_grid_without_labels_is_just_the_tiles(tmp_path: Path) -> None:
    save_grid(tmp_path / "g.png", _tiles(2, 3), gap=2, min_tile=0)
    assert Image.open(tmp_path / "g.png").size == (3 * 34 - 2, 2 * 34 - 2)


def test_small_tiles_enlarged_by_a_whole_factor(tmp_path: Path) -> None:
    tile = torch.zeros(3, 32, 32)
    tile[:, 0, 0] = 1.0  # one white pixel in the corner
    save_grid(tmp_path / "g.png", [[tile]], min_tile=96)
    image = np.asarray(Image.open(tmp_path / "g.png").convert("L"))
    assert image.shape == (96, 96)
    assert (image[:3, :3] == 255).all() and (image[3:, 3:] == 0).all()


def test_grid_labels_add_a_header_and_a_margin_with_text(tmp_path: Path) -> None:
    save_grid(tmp_path / "g.png", _tiles(2, 3), column_labels=["input", "teacher", "target"],
              row_labels=["img_0", "img_1"], min_tile=0)
    image = np.asarray(Image.open(tmp_path / "g.png").convert("L"))
    height, width = image.shape
    assert height > 2 * 34 - 2 and width > 3 * 34 - 2
    top = height - (2 * 34 - 2)
    left = width - (3 * 34 - 2)
    assert (image[:top, left:] < 128).any()  # dark text above the columns
    assert (image[top:, :left] < 128).any()  # and beside the rows
    assert (image[top:top + 32, left:left + 32] == 128).all()  # first tile intact


def test_long_column_labels_wrap_instead_of_overlapping(tmp_path: Path) -> None:
    save_grid(tmp_path / "one.png", _tiles(1, 2), column_labels=["a", "b"], min_tile=0)
    save_grid(tmp_path / "two.png", _tiles(1, 2), min_tile=0,
              column_labels=["teacher output restored", "clean target image"])
    assert Image.open(tmp_path / "two.png").size[1] > Image.open(tmp_path / "one.png").size[1]
    assert Image.open(tmp_path / "two.png").size[0] == Image.open(tmp_path / "one.png").size[0]


def test_grid_label_count_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="2 column labels for 3 columns"):
        save_grid(tmp_path / "g.png", _tiles(1, 3), column_labels=["a", "b"])
    with pytest.raises(ValueError, match="1 row labels for 2 rows"):
        save_grid(tmp_path / "g.png", _tiles(2, 3), row_labels=["a"])


def test_loss_figure_axes_and_legend() -> None:
    figure = loss_figure({"dream (L_dream)": [0.3, 0.2, 0.1], "kd (L_KD)": [0.05, 0.0, 0.02]},
                         title="joint dream + distill")
    axes = figure.axes[0]
    assert axes.get_xlabel() == "step" and axes.get_ylabel() == "loss (log scale)"
    assert axes.get_yscale() == "log" and axes.get_title() == "joint dream + distill"
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["dream (L_dream)",
                                                                    "kd (L_KD)"]
    kd = axes.get_lines()[1]
    assert list(kd.get_xdata()) == [1, 3]  # the zero cannot be drawn on a log axis
    assert all(math.isfinite(v) for v in kd.get_ydata())


def test_save_curves_png_size(tmp_path: Path) -> None:
    save_curves(tmp_path / "l.png", {"kd": [1.0, 0.5]}, size=(640, 360))
    assert Image.open(tmp_path / "l.png").size == (640, 360)
