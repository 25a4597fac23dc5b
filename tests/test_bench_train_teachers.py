"""bench/train_teachers.py's training data: the degradation mixtures and the photo crops."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from dreamprune_cli.data.clean import procedural_images
from dreamprune_cli.data.degrade import rain_streaks

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "train_teachers.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("train_teachers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_teachers"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_mixture_probabilities_are_distributions(bench) -> None:
    for task, mixtures in bench.MIXTURES.items():
        for name, renderers in mixtures.items():
            assert sum(weight for _, weight in renderers) == pytest.approx(1.0), (task, name)
    for name, recipe in bench.RECIPES.items():
        assert recipe.mixture in bench.MIXTURES[recipe.task], name


def test_plain_mixture_is_the_full_range_synthesizer(bench) -> None:
    clean = procedural_images(4, 32, seed=1)
    mixed = bench.degrade_mixture("derain", "plain", clean, torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    torch.multinomial(torch.tensor([1.0]), 4, replacement=True, generator=generator)
    direct, _ = rain_streaks(clean, generator)
    assert torch.equal(mixed, direct)


def test_varied_mixture_is_seeded_and_uses_every_renderer(bench) -> None:
    clean = procedural_images(24, 32, seed=2)
    first = bench.degrade_mixture("derain", "varied", clean, torch.Generator().manual_seed(4))
    second = bench.degrade_mixture("derain", "varied", clean, torch.Generator().manual_seed(4))
    assert torch.equal(first, second)
    # Light rain and kornia's rain have no veil: some images are untouched off the streaks,
    # others (full range, with a veil) change nearly every pixel.
    changed = ((first - clean).abs() > 1e-4).float().mean(dim=(1, 2, 3))
    assert changed.min() < 0.5 < changed.max()
    hazy = bench.degrade_mixture("dehaze", "varied", clean, torch.Generator().manual_seed(5))
    assert hazy.shape == clean.shape and not torch.equal(hazy, clean)


def test_photo_crops_come_from_package_photographs(bench) -> None:
    for package in ("skimage", "sklearn", "matplotlib"):
        pytest.importorskip(package, reason=f"photo crops need {package} (the [bench] extra)")
    crops = bench.photo_crops(3, 48, torch.Generator().manual_seed(6))
    assert crops.shape == (3, 3, 48, 48)
    assert 0.0 <= float(crops.min()) and float(crops.max()) <= 1.0
    assert set(bench.PHOTOS).isdisjoint(Path(f).name for _, f in bench.TRAINING_PHOTOS)
