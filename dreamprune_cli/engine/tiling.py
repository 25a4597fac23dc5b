"""Tiled inference: restore a large image tile by tile, in memory bounded by the tile size.

The image is cut into a grid of ``tile x tile`` cores (the last row and column smaller).
Each core is restored together with up to ``overlap`` pixels of context on every side
(clipped at the image border), and only the core of the result is kept: no blending, so the
output is exactly a whole-image pass whenever every output pixel depends only on inputs
within ``overlap`` pixels (a bounded receptive field of radius <= ``overlap``). Tile and
overlap are multiples of the model's size multiple, so every tile starts on that grid: a
network that downsamples by 2^k sees the same alignment as in the whole image, interior
tiles need no padding, and a tile touching the right or bottom border is padded (by the
adapter, reflect) exactly as the whole image is there.

Models with whole-image operations (global pooling as in FFA's channel attention, instance
normalisation as in HINet) or receptive fields wider than ``overlap`` give a close, not an
equal, result; the larger the overlap, the closer.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import nn

log = logging.getLogger(__name__)

DEFAULT_TILE_OVERLAP = 32


@dataclass(frozen=True)
class Tiling:
    """Tile size and overlap in pixels, both multiples of ``multiple`` (see :meth:`aligned`).

    Raises:
        ValueError: ``tile < 1``, ``overlap < 0`` or ``multiple < 1``.
    """

    tile: int
    overlap: int = DEFAULT_TILE_OVERLAP
    multiple: int = 1

    def __post_init__(self) -> None:
        if self.tile < 1:
            raise ValueError(f"tile must be >= 1 pixel, got {self.tile}")
        if self.overlap < 0:
            raise ValueError(f"tile overlap must be >= 0 pixels, got {self.overlap}")
        if self.multiple < 1:
            raise ValueError(f"size multiple must be >= 1, got {self.multiple}")

    @classmethod
    def aligned(cls, tile: int, overlap: int, multiple: int) -> Tiling:
        """``tile`` and ``overlap`` rounded up to multiples of the model's ``multiple``
        (logged when they change)."""
        aligned_tile = math.ceil(tile / multiple) * multiple
        aligned_overlap = math.ceil(overlap / multiple) * multiple
        if (aligned_tile, aligned_overlap) != (tile, overlap):
            log.info("tile %d / overlap %d rounded up to %d / %d (multiples of the model's "
                     "size multiple %d)", tile, overlap, aligned_tile, aligned_overlap, multiple)
        return cls(aligned_tile, aligned_overlap, multiple)


def restore_tiled(model: nn.Module, image: torch.Tensor, device: torch.device,
                  tiling: Tiling) -> torch.Tensor:
    """Run ``model`` (RGB [0, 1] in and out, any size) on ``image`` ``(3, H, W)`` tile by tile.

    Returns the float32 ``(3, H, W)`` restoration on the CPU. At most one tile of
    ``(tile + 2 overlap)^2`` pixels is on ``device`` at a time.

    Raises:
        ValueError: ``tiling`` is not aligned to its ``multiple``, or ``image`` is not
            ``(3, H, W)``.
    """
    if tiling.tile % tiling.multiple or tiling.overlap % tiling.multiple:
        raise ValueError(f"tile {tiling.tile} and overlap {tiling.overlap} must be multiples "
                         f"of {tiling.multiple}; use Tiling.aligned")
    if image.dim() != 3:
        raise ValueError(f"expected one image (3, H, W), got {tuple(image.shape)}")
    _, height, width = image.shape
    tile, overlap = tiling.tile, tiling.overlap
    output = torch.empty(image.shape, dtype=torch.float32)
    with torch.inference_mode():
        for top in range(0, height, tile):
            bottom = min(top + tile, height)
            top_in, bottom_in = max(top - overlap, 0), min(bottom + overlap, height)
            for left in range(0, width, tile):
                right = min(left + tile, width)
                left_in, right_in = max(left - overlap, 0), min(right + overlap, width)
                piece = image[:, top_in:bottom_in, left_in:right_in].unsqueeze(0).to(device)
                restored = model(piece).squeeze(0)
                output[:, top:bottom, left:right] = restored[
                    :, top - top_in:bottom - top_in, left - left_in:right - left_in].float().cpu()
    return output
