"""Issue 32 item 5: the pipeline's pictures on real images: rows in natural order, bounded
cells and grid, a centre crop for detail, dreams.png from the last complete round with its
step."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.data.pairs import natural_sorted, pair_folders
from dreamprune_cli.engine.dream import Dreamer, DreamSchedule
from dreamprune_cli.engine.evaluate import EvaluationResult
from dreamprune_cli.engine.inputs import DreamInputs
from dreamprune_cli.engine.runtime import resolve_precision
from dreamprune_cli.models import build_model, get_model_info
from dreamprune_cli.models.adapter import RestorationAdapter
from dreamprune_cli.report import save_grid
from dreamprune_cli.runkit import pictures
from dreamprune_cli.runkit.pictures import comparison_grid, latest_samples
from tests.conftest import save_rgb

COLUMNS = ["input", "teacher", "pruned", "student", "target"]
CPU = torch.device("cpu")


def _twelve_pairs(root: Path, height: int = 300, width: int = 400) -> list:
    """Pairs named 1..12 whose input is the flat grey level 15 * name (15, 30, ..., 180)."""
    for index in range(1, 13):
        save_rgb(root / "in" / f"{index}.png", np.full((height, width, 3), 15 * index / 255))
        save_rgb(root / "tg" / f"{index}.png", np.full((height, width, 3), 0.9))
    return pair_folders(root / "in", root / "tg")


def _evaluation(count: int, height: int = 300, width: int = 400) -> EvaluationResult:
    return EvaluationResult(metric_space="rgb", crop_border=0, count=count, psnr=0.0, ssim=0.0,
                            seconds=0.0, macs=0, macs_256=0, params=0, params_nonzero=0,
                            outputs=[torch.full((3, height, width), 0.5)] * count)


def test_natural_order_of_names_and_pairs(tmp_path: Path) -> None:
    text_order = sorted(str(i) for i in range(1, 13))  # 1, 10, 11, 12, 2, ...
    assert natural_sorted(text_order) == [str(i) for i in range(1, 13)]
    assert natural_sorted(["rain-10", "rain-2", "Rain-3"]) == ["rain-2", "Rain-3", "rain-10"]
    pairs = _twelve_pairs(tmp_path, 8, 8)
    assert [p.name for p in pairs] == [str(i) for i in range(1, 13)]
    assert [p.name for p in pair_folders(tmp_path / "in", tmp_path / "tg", limit=3)] == \
        ["1", "2", "3"]


def test_grid_rows_in_natural_order_and_bounded(tmp_path: Path) -> None:
    pairs = _twelve_pairs(tmp_path)
    evaluations = [_evaluation(12) for _ in range(3)]
    comparison_grid(tmp_path / "grid.png", pairs, evaluations, COLUMNS)
    grid = np.asarray(Image.open(tmp_path / "grid.png").convert("L")).astype(int)
    height, width = grid.shape
    cell_w, cell_h = 256, 192  # 400x300 shrunk by 256/400: the longest side 256, aspect kept
    left = width - (5 * (cell_w + 2) - 2)
    top = height - (12 * (cell_h + 2) - 2)
    assert width <= 2048 and left > 0 and top > 0
    levels = [int(grid[top + r * (cell_h + 2) + cell_h // 2, left + cell_w // 2])
              for r in range(12)]
    assert levels == [15 * i for i in range(1, 13)]  # row r shows image r + 1
    assert (grid[top:, :left] < 128).any()  # the names are written beside the rows


def test_grid_crop_changes_the_cells(tmp_path: Path) -> None:
    pairs = _twelve_pairs(tmp_path)
    evaluations = [_evaluation(12) for _ in range(3)]
    comparison_grid(tmp_path / "whole.png", pairs, evaluations, COLUMNS)
    comparison_grid(tmp_path / "crop.png", pairs, evaluations, COLUMNS, crop=64)
    whole = Image.open(tmp_path / "whole.png").size
    cropped = Image.open(tmp_path / "crop.png").size
    # 64x64 crops, enlarged by 2 (below the 96 px minimum) to 128x128 cells
    assert whole[0] - cropped[0] == 5 * (256 - 128)
    assert whole[1] - cropped[1] == 12 * (192 - 128)


def test_wide_grids_shrink_to_the_width_bound(tmp_path: Path) -> None:
    rows = [[torch.full((3, 300, 300), 0.5) for _ in range(12)]]
    save_grid(tmp_path / "g.png", rows)
    width, height = Image.open(tmp_path / "g.png").size
    assert width <= 2048 and height == (2048 - 11 * 2) // 12  # cells of 168x168, rounded down


def _fake_dreams(finished: bool) -> DreamInputs:
    dreamer = SimpleNamespace(dreams=torch.full((2, 3, 8, 8), 0.25),
                              clean=torch.zeros(2, 3, 8, 8),
                              finished=(torch.full((2, 3, 8, 8), 0.75), torch.zeros(2, 3, 8, 8))
                              if finished else None)
    return DreamInputs(dreamer)  # type: ignore[arg-type]


def test_dreams_of_the_last_complete_round_and_their_step() -> None:
    samples, title = latest_samples(_fake_dreams(finished=True), step=60, round_steps=50)
    assert float(samples[0][1].mean()) == 0.75  # the round that ended at step 50
    assert title == "dreams of the round that ended at step 50 (the run: 60 steps)"
    samples, title = latest_samples(_fake_dreams(finished=True), step=100, round_steps=50)
    assert float(samples[0][1].mean()) == 0.25  # the current round is complete
    assert title == "dreams of the round that ended at step 100"
    samples, title = latest_samples(_fake_dreams(finished=False), step=10, round_steps=50)
    assert float(samples[0][1].mean()) == 0.25
    assert title == "dreams at step 10 (round in progress: 10 of 50 steps)"


def test_dream_grid_is_titled_with_the_step(tmp_path: Path, monkeypatch) -> None:
    seen: dict[str, object] = {}
    monkeypatch.setattr(pictures, "save_grid", lambda path, rows, **kw: seen.update(kw))
    identity = torch.nn.Identity()
    pictures.dream_grid(tmp_path / "dreams.png", _fake_dreams(True), identity, identity,
                        60, 50, CPU, ["dream", "teacher", "student", "clean"])
    assert "step 50" in str(seen["title"]) and seen["row_labels"] == ["dream 1", "dream 2"]


def test_dreamer_keeps_the_finished_round_through_its_state() -> None:
    torch.manual_seed(0)
    teacher = RestorationAdapter(build_model("ffa", "tiny", blocks=1), get_model_info("ffa"))
    schedule = DreamSchedule(batch_size=2, size=16)

    def dreamer() -> Dreamer:
        return Dreamer(teacher, make_clean_source(None), schedule,
                       torch.Generator().manual_seed(0), CPU, resolve_precision(CPU))

    first = dreamer()
    first.new_round()
    assert first.finished is None
    first.step()
    ended = first.dreams.detach().clone()
    first.new_round()
    assert first.finished is not None and torch.equal(first.finished[0], ended)
    second = dreamer()
    second.load_state_dict(first.state_dict())
    assert second.finished is not None and torch.equal(second.finished[0], ended)
    old = {k: v for k, v in first.state_dict().items() if k != "finished"}  # earlier versions
    third = dreamer()
    third.load_state_dict(old)
    assert third.finished is None


def test_synthetic_inputs_are_titled_with_their_step() -> None:
    drawn = [("synthetic", torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))]
    source = SimpleNamespace(name="synthetic", samples=lambda: drawn)
    samples, title = latest_samples(source, step=7, round_steps=5)  # type: ignore[arg-type]
    assert samples == drawn and title == "synthetic inputs of step 7"


def test_adversarial_inputs_show_the_plain_then_the_moved_images() -> None:
    drawn = [("synthetic", torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 8)),
             ("adversarial", torch.ones(1, 3, 8, 8), torch.zeros(1, 3, 8, 8))]
    source = SimpleNamespace(name="adversarial", samples=lambda: drawn)
    samples, title = latest_samples(source, step=3, round_steps=5)  # type: ignore[arg-type]
    assert samples == drawn
    assert title == "synthetic inputs of step 3, then the same step's moved towards disagreement"
