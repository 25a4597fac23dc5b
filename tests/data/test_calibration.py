"""Calibration images: patches from a folder, or synthetic degraded images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dreamprune_cli.data.images import read_image
from dreamprune_cli.errors import UsageError
from dreamprune_cli.data.calibration import calibration_from_dir, synthetic_calibration


def test_patches_come_from_the_images(pair_dirs) -> None:
    inputs, _ = pair_dirs  # three 32x40 images
    patches = calibration_from_dir(inputs, 5, 16, seed=3)
    assert patches.shape == (5, 3, 16, 16)
    assert torch.equal(patches, calibration_from_dir(inputs, 5, 16, seed=3))
    first = read_image(sorted(inputs.iterdir())[0])
    windows = first.unfold(1, 16, 1).unfold(2, 16, 1)  # (3, 17, 25, 16, 16)
    assert any(torch.equal(windows[:, i, j], patches[0])
               for i in range(windows.shape[1]) for j in range(windows.shape[2]))
    assert calibration_from_dir(inputs, 2, 64, seed=0).shape == (2, 3, 32, 32)  # smallest side


def test_bad_calibration_folders(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such directory"):
        calibration_from_dir(tmp_path / "missing", 2, 16, 0)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="no images"):
        calibration_from_dir(tmp_path, 2, 16, 0)


def test_synthetic_fallback_is_seeded() -> None:
    images = synthetic_calibration("dehaze", 2, 16, seed=1)
    assert images.shape == (2, 3, 16, 16) and 0 <= float(images.min()) <= float(images.max()) <= 1
    assert torch.equal(images, synthetic_calibration("dehaze", 2, 16, seed=1))
