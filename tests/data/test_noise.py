"""``dreamprune_cli.data.noise``: fractal noise shape, normalisation, smoothness, seeding."""

from __future__ import annotations

import torch

from dreamprune_cli.data.noise import fractal_noise


def test_fractal_noise_is_normalised() -> None:
    noise = fractal_noise(2, 3, 40, torch.Generator().manual_seed(0), slope=1.0)
    assert noise.shape == (2, 3, 40, 40)
    torch.testing.assert_close(noise.mean(dim=(-2, -1)), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(noise.std(dim=(-2, -1)), torch.ones(2, 3), atol=1e-4, rtol=0)


def test_smoother_spectrum_has_smaller_neighbour_differences() -> None:
    g = torch.Generator().manual_seed(0)
    rough, smooth = fractal_noise(1, 1, 64, g, slope=0.3), fractal_noise(1, 1, 64, g, slope=2.5)
    def diff(x: torch.Tensor) -> float:
        return float((x[..., 1:] - x[..., :-1]).abs().mean())
    assert diff(smooth) < 0.5 * diff(rough)


def test_same_generator_seed_same_field() -> None:
    a = fractal_noise(2, 3, 32, torch.Generator().manual_seed(7))
    b = fractal_noise(2, 3, 32, torch.Generator().manual_seed(7))
    c = fractal_noise(2, 3, 32, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_a_slope_per_image_and_a_side_between_octaves() -> None:
    """A ``(count,)`` slope gives each image its own spectrum; a side that is no power of
    two times ``base`` (the octaves stop at 24 for 40) is reached by the final resize."""
    slopes = torch.tensor([0.3, 2.5])
    noise = fractal_noise(2, 1, 40, torch.Generator().manual_seed(0), slope=slopes)
    assert noise.shape == (2, 1, 40, 40)
    steps = (noise[..., 1:] - noise[..., :-1]).abs().mean(dim=(1, 2, 3))
    assert steps[1] < 0.5 * steps[0]  # the second image is the smooth one
