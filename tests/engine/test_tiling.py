"""Tiled inference equals a whole-image pass for models with a bounded receptive field."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dreamprune_cli.engine.evaluate import restore
from dreamprune_cli.engine.tiling import Tiling, restore_tiled
from dreamprune_cli.models.adapter import RestorationAdapter
from dreamprune_cli.models.registry import ModelInfo

CPU = torch.device("cpu")


def _adapter(network: nn.Module, size_multiple: int = 1) -> RestorationAdapter:
    info = ModelInfo(name="test", factory=lambda: network, task="derain",
                     description="test network", size_multiple=size_multiple)
    return RestorationAdapter(network, info).eval()


def _three_convs() -> nn.Module:
    """Three 3x3 convolutions, zero padding: receptive field radius 3."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 3, 3, padding=1))


class _DownUp(nn.Module):
    """Stride-2 encoder, nearest upsampling decoder: needs sizes divisible by 4."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.down1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.down2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.up = nn.Upsample(scale_factor=4, mode="nearest")
        self.out = nn.Conv2d(8 + 3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] % 4 or x.shape[-2] % 4:
            raise ValueError("sizes must be multiples of 4")
        features = self.up(torch.relu(self.down2(torch.relu(self.down1(x)))))
        return self.out(torch.cat([features, x], dim=1))


def test_tiled_identity_equals_untiled_exactly() -> None:
    image = torch.rand(3, 37, 53)
    model = _adapter(nn.Identity())
    for tiling in (Tiling(16, 0), Tiling(8, 4), Tiling(64, 32), Tiling(1, 0)):
        assert torch.equal(restore_tiled(model, image, CPU, tiling), image)


def test_tiled_conv_equals_untiled_when_overlap_covers_the_receptive_field() -> None:
    image = torch.rand(3, 45, 61)
    model = _adapter(_three_convs())
    whole = restore(model, image, CPU)
    for tiling in (Tiling(16, 3), Tiling(20, 8), Tiling(7, 3)):
        tiled = restore(model, image, CPU, tiling)
        assert tiled.shape == whole.shape
        assert (tiled - whole).abs().max() <= 1e-6
    # Less context than the receptive field: the seams show (the test can fail).
    assert (restore(model, image, CPU, Tiling(16, 1)) - whole).abs().max() > 1e-3


def test_tiles_aligned_to_the_size_multiple_equal_untiled() -> None:
    image = torch.rand(3, 45, 61)  # not a multiple of 4: the adapter pads (reflect)
    model = _adapter(_DownUp(), size_multiple=4)
    whole = restore(model, image, CPU)
    tiling = Tiling.aligned(14, 10, 4)
    assert (tiling.tile, tiling.overlap) == (16, 12)
    assert (restore(model, image, CPU, tiling) - whole).abs().max() <= 1e-6


def test_tiling_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match="tile must be >= 1"):
        Tiling(0)
    with pytest.raises(ValueError, match="overlap must be >= 0"):
        Tiling(8, -1)
    with pytest.raises(ValueError, match="multiples of 4"):
        restore_tiled(nn.Identity(), torch.rand(3, 8, 8), CPU, Tiling(6, 0, 4))
    assert Tiling.aligned(100, 10, 8) == Tiling(104, 16, 8)
    assert Tiling.aligned(64, 0, 1) == Tiling(64, 0, 1)
