"""PSNR/SSIM against hand computations and an independent NumPy implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dreamprune_cli.metrics import psnr, quantize_8bit, ssim, to_metric_space


def numpy_y(rgb: np.ndarray) -> np.ndarray:
    """MATLAB rgb2ycbcr luma on 0-255 from (H, W, 3) in [0, 1]."""
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])


def numpy_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. with an 11x11 Gaussian (sigma 1.5), valid region, one channel 0-255."""
    coords = np.arange(11) - 5
    g = np.exp(-(coords**2) / (2 * 1.5**2))
    g /= g.sum()
    window = np.outer(g, g)
    h, w = a.shape

    def filt(x: np.ndarray) -> np.ndarray:
        out = np.empty((h - 10, w - 10))
        for i in range(h - 10):
            for j in range(w - 10):
                out[i, j] = (x[i:i + 11, j:j + 11] * window).sum()
        return out

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = filt(a), filt(b)
    var_a, var_b = filt(a * a) - mu_a**2, filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    return float((((2 * mu_a * mu_b + c1) * (2 * cov + c2))
                  / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))).mean())


def test_psnr_one_level_everywhere() -> None:
    a = torch.zeros(1, 3, 8, 8)
    b = torch.full((1, 3, 8, 8), 1 / 255)
    assert float(psnr(a, b, "rgb")) == pytest.approx(20 * math.log10(255), abs=1e-5)


def test_psnr_y_channel_hand_computed() -> None:
    # Only the red channel differs by 0.1: Y differs by 6.5481 everywhere.
    a = torch.zeros(1, 3, 4, 4)
    b = a.clone()
    b[:, 0] = 0.1
    expected = 10 * math.log10(255**2 / 6.5481**2)
    assert float(psnr(a, b, "y")) == pytest.approx(expected, abs=1e-5)


def test_identical_images_give_inf() -> None:
    a = torch.rand(2, 3, 16, 16)
    assert torch.isinf(psnr(a, a)).all()
    assert torch.allclose(ssim(a, a), torch.ones(2, dtype=torch.float64))


def test_y_conversion_matches_matlab_constants() -> None:
    white = torch.ones(3, 1, 1)
    assert float(to_metric_space(white, "y")) == pytest.approx(235.0, abs=1e-9)
    assert float(to_metric_space(torch.zeros(3, 1, 1), "y")) == pytest.approx(16.0)


def test_against_numpy_protocol() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, (24, 30, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ta = torch.from_numpy(a.transpose(2, 0, 1)).float()
    tb = torch.from_numpy(b.transpose(2, 0, 1)).float()
    ya, yb = numpy_y(ta.double().numpy().transpose(1, 2, 0)), numpy_y(
        tb.double().numpy().transpose(1, 2, 0))
    expected_psnr = 10 * math.log10(255**2 / np.mean((ya - yb) ** 2))
    assert float(psnr(ta, tb, "y")) == pytest.approx(expected_psnr, abs=1e-6)
    assert float(ssim(ta, tb, "y")) == pytest.approx(numpy_ssim(ya, yb), abs=1e-6)
    rgb_a, rgb_b = ta.double().numpy() * 255, tb.double().numpy() * 255
    expected_rgb = np.mean([numpy_ssim(rgb_a[c], rgb_b[c]) for c in range(3)])
    assert float(ssim(ta, tb, "rgb")) == pytest.approx(expected_rgb, abs=1e-6)


def test_crop_border_and_errors() -> None:
    a, b = torch.zeros(3, 20, 20), torch.zeros(3, 20, 20)
    b[:, :2] = 1.0  # only the border differs
    assert math.isinf(float(psnr(a, b, crop_border=2)))
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr(a, torch.zeros(3, 20, 21))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="leaves nothing"):
        psnr(a, b, crop_border=10)


def test_quantize_rounds_to_levels() -> None:
    x = torch.tensor([-0.2, 0.5 / 255, 0.51 / 255, 1.3])
    assert quantize_8bit(x).mul(255).tolist() == pytest.approx([0, 0, 1, 255])
