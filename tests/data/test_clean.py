"""Procedural dead-leaves scenes and folder crops: shapes, ranges, determinism, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dreamprune_cli.data.clean import (CleanSource, FolderSource, ProceduralSource,
                                       make_clean_source, procedural_images)
from dreamprune_cli.errors import UsageError
from tests.conftest import save_rgb


@pytest.mark.parametrize("size", [8, 17, 64])
def test_procedural_shape_range_dtype(size: int) -> None:
    images = procedural_images(3, size, seed=1)
    assert images.shape == (3, 3, size, size) and images.dtype == torch.float32
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_procedural_is_deterministic_per_seed() -> None:
    a, b = procedural_images(4, 32, seed=5), procedural_images(4, 32, seed=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, procedural_images(4, 32, seed=6))


def test_procedural_scenes_have_content_and_variety() -> None:
    images = procedural_images(8, 64, seed=0)
    # Not flat: every scene has spatial contrast and some edges.
    assert (images.std(dim=(1, 2, 3)) > 0.02).all()
    gradient = (images[..., 1:, :] - images[..., :-1, :]).abs().amax(dim=(1, 2, 3))
    assert (gradient > 0.1).all()
    # Scenes differ from each other (mean colours spread).
    assert images.mean(dim=(2, 3)).std(dim=0).mean() > 0.05


def test_procedural_source_matches_shortcut_and_protocol() -> None:
    source = ProceduralSource()
    assert isinstance(source, CleanSource)
    drawn = source.sample(2, 24, torch.Generator().manual_seed(3))
    assert torch.equal(drawn, procedural_images(2, 24, seed=3))


def test_procedural_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        procedural_images(0, 32)
    with pytest.raises(ValueError):
        ProceduralSource(r_min=0.5, r_max=0.1)


def test_folder_source_crops_from_the_images(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    save_rgb(tmp_path / "a.png", rng.uniform(0, 1, (40, 50, 3)))
    save_rgb(tmp_path / "sub" / "b.jpg", np.full((30, 30, 3), 0.5))
    source = make_clean_source(tmp_path)
    assert isinstance(source, FolderSource) and isinstance(source, CleanSource)
    assert len(source.paths) == 2
    crops = source.sample(6, 24, torch.Generator().manual_seed(0))
    assert crops.shape == (6, 3, 24, 24) and crops.min() >= 0 and crops.max() <= 1
    again = FolderSource(tmp_path).sample(6, 24, torch.Generator().manual_seed(0))
    assert torch.equal(crops, again)


def test_folder_source_upscales_small_images(tmp_path: Path) -> None:
    save_rgb(tmp_path / "small.png", np.full((10, 12, 3), 0.25))
    crops = FolderSource(tmp_path).sample(2, 32, torch.Generator().manual_seed(0))
    assert crops.shape == (2, 3, 32, 32)
    torch.testing.assert_close(crops, torch.full_like(crops, round(0.25 * 255) / 255),
                               atol=1e-4, rtol=0)


def test_folder_source_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such directory"):
        FolderSource(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="no images"):
        FolderSource(tmp_path)


def test_default_source_is_procedural() -> None:
    assert isinstance(make_clean_source(None), ProceduralSource)
