"""Fractal (``1/f``) noise fields: the shared texture primitive of the procedural scenes.

Used by the dead-leaves scenes (:mod:`dreamprune_cli.data.clean`), the indoor rooms
(:mod:`dreamprune_cli.data.rooms`), the rain and haze degradations and the dreaming
initialisation. Kept in its own module so those can import it without importing each other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["fractal_noise"]


def fractal_noise(count: int, channels: int, size: int, generator: torch.Generator,
                  slope: torch.Tensor | float = 1.0, base: int = 3) -> torch.Tensor:
    """Zero-mean, unit-std ``1/f^slope`` noise ``(count, channels, size, size)``.

    Octaves of white noise on grids ``base, 2 base, 4 base, ...`` (up to ``size``) are summed with amplitude
    ``(grid / base) ** -slope`` through a pyramid (upsample the running sum by 2, add the next
    octave), then resized to ``size``; ``slope`` may be a ``(count,)`` tensor (one spectrum
    per image). Larger slopes give smoother fields.
    """
    slope_t = torch.as_tensor(slope, dtype=torch.float32).reshape(-1, 1, 1, 1)
    grid = base
    total = torch.randn((count, channels, grid, grid), generator=generator)
    while grid * 2 <= size:
        grid *= 2
        total = F.interpolate(total, scale_factor=2, mode="bilinear", align_corners=False)
        octave = torch.randn((count, channels, grid, grid), generator=generator)
        total = total + octave * (grid / base) ** (-slope_t)
    total = F.interpolate(total, size=(size, size), mode="bilinear", align_corners=False)
    total = total - total.mean(dim=(-2, -1), keepdim=True)
    return total / total.std(dim=(-2, -1), keepdim=True).clamp_min(1e-6)
