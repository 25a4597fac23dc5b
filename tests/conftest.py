"""Shared fixtures: an isolated environment, a CLI runner, small image folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache folder for the synthetic evaluation sets of the whole session."""
    return tmp_path_factory.mktemp("dreamprune-cache")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, synthetic_cache: Path) -> None:
    """No DREAMPRUNE_* variable of the developer's shell leaks into a test; synthetic sets
    are cached in a temporary folder, never in the user's home."""
    for key in list(os.environ):
        if key.startswith("DREAMPRUNE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DREAMPRUNE_CACHE", str(synthetic_cache))
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Iterator[None]:
    """One intra-op thread: the suite's tiny tensors run slower, not faster, with more
    threads on a busy 2-core CI machine (measured: 229 s -> 14 s for the data tests)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def save_rgb(path: Path, array: np.ndarray) -> Path:
    """Save a float (H, W, 3) array in [0, 1] as an 8-bit PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8)).save(path)
    return path


@pytest.fixture
def pair_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """Three 32x40 degraded/clean pairs in input/ and target/."""
    rng = np.random.default_rng(0)
    for index in range(3):
        clean = rng.uniform(0, 1, (32, 40, 3))
        noisy = clean + rng.normal(0, 0.05, clean.shape)
        save_rgb(tmp_path / "target" / f"img{index}.png", clean)
        save_rgb(tmp_path / "input" / f"img{index}.png", noisy)
    return tmp_path / "input", tmp_path / "target"
