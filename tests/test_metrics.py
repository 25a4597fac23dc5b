"""PSNR/SSIM against hand computations and an independent NumPy implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

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


# --------------------------------------------------------------------------- references
def gaussian_1d() -> np.ndarray:
    coords = np.arange(11) - 5
    g = np.exp(-(coords**2) / (2 * 1.5**2))
    return g / g.sum()


def conv2d_ssim_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The straightforward 2-D implementation (one 11x11 convolution per statistic, valid
    region, BasicSR constants) of ``(N, C, H, W)`` float64 images on 0-255: ``(N,)``."""
    g = torch.from_numpy(gaussian_1d())
    window = torch.outer(g, g).view(1, 1, 11, 11)
    n, c, h, w = a.shape
    a, b = a.reshape(n * c, 1, h, w), b.reshape(n * c, 1, h, w)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    var_a = F.conv2d(a * a, window) - mu_a**2
    var_b = F.conv2d(b * b, window) - mu_b**2
    cov = F.conv2d(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim_map.view(n, c, -1).mean(dim=-1).mean(dim=-1)


def numpy_matlab_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MATLAB's ``ssim(A, ref)`` on one double plane, written out plainly: an 11x11
    ``fspecial('gaussian', 11, 1.5)``, ``imfilter(..., 'conv', 'replicate')`` (same size),
    dynamic range 1, variances clamped at 0, mean of the map."""
    window = np.outer(gaussian_1d(), gaussian_1d())
    h, w = a.shape

    def filt(x: np.ndarray) -> np.ndarray:
        padded = np.pad(x, 5, mode="edge")
        out = np.empty((h, w))
        for i in range(h):
            for j in range(w):
                out[i, j] = (padded[i:i + 11, j:j + 11] * window[::-1, ::-1]).sum()
        return out

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = filt(a), filt(b)
    var_a = np.maximum(filt(a * a) - mu_a**2, 0)
    var_b = np.maximum(filt(b * b) - mu_b**2, 0)
    cov = filt(a * b) - mu_a * mu_b
    return float((((2 * mu_a * mu_b + c1) * (2 * cov + c2))
                  / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))).mean())


# --------------------------------------------------------------------------- SSIM variants
@pytest.mark.parametrize("space", ["y", "rgb"])
def test_separable_ssim_equals_2d_reference(space: str) -> None:
    generator = torch.Generator().manual_seed(3)
    a = torch.rand(2, 3, 37, 52, generator=generator)
    b = (a + 0.2 * torch.randn(2, 3, 37, 52, generator=generator)).clamp(0, 1)
    expected = conv2d_ssim_reference(to_metric_space(a, space), to_metric_space(b, space))
    assert torch.allclose(ssim(a, b, space), expected, rtol=0, atol=1e-12)
    assert torch.allclose(ssim(a, b, space, variant="basicsr"), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("space", ["y", "rgb"])
def test_matlab_ssim_equals_plain_numpy(space: str) -> None:
    rng = np.random.default_rng(4)
    a = rng.uniform(0, 1, (3, 17, 23))
    b = np.clip(a + rng.normal(0, 0.15, a.shape), 0, 1)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    planes_a = to_metric_space(ta, space).numpy()
    planes_b = to_metric_space(tb, space).numpy()
    expected = np.mean([numpy_matlab_ssim(pa, pb) for pa, pb in zip(planes_a, planes_b)])
    assert float(ssim(ta, tb, space, variant="matlab")) == pytest.approx(expected, abs=1e-12)


def test_constant_images_by_hand() -> None:
    # 0 against 1/255 everywhere: mu = 0 and 1 on the 0-255 scale, no variance, so
    # SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1) at every pixel.
    a = torch.zeros(3, 16, 16, dtype=torch.float64)
    b = torch.full((3, 16, 16), 1 / 255, dtype=torch.float64)
    c1_basicsr, c1_matlab = (0.01 * 255) ** 2, 0.01**2
    assert float(ssim(a, b, variant="basicsr")) == pytest.approx(
        c1_basicsr / (1 + c1_basicsr), abs=1e-12)
    assert float(ssim(a, b, variant="matlab")) == pytest.approx(
        c1_matlab / (1 + c1_matlab), abs=1e-12)


def test_impulse_by_hand() -> None:
    # One grey level v at the centre of a black 21x21 plane, scored against black. A pixel
    # whose window holds the impulse with weight w = g[di] g[dj] sees mu_b = w v,
    # var_b = w v^2 - (w v)^2 and nothing else, so SSIM = C1 C2 / ((mu_b^2 + C1)(var_b + C2));
    # every other pixel compares two constant black windows and scores 1.
    v = 200 / 255
    clean = torch.zeros(3, 21, 21, dtype=torch.float64)
    spot = clean.clone()
    spot[:, 10, 10] = v
    g = gaussian_1d()
    level = 200.0

    def local(w: float, c1: float, c2: float) -> float:
        mu = w * level
        return c1 * c2 / ((mu**2 + c1) * (w * level**2 - mu**2 + c2))

    # basicsr: the valid map of a 21x21 image is 11x11 and every window sees the impulse.
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = np.mean([local(g[i] * g[j], c1, c2) for i in range(11) for j in range(11)])
    assert float(ssim(spot, clean, variant="basicsr")) == pytest.approx(expected, abs=1e-12)
    # matlab: a 21x21 map; the 11x11 pixels around the impulse as above, 320 others score 1.
    c1, c2 = 0.01**2, 0.03**2
    inside = [local(g[i] * g[j], c1, c2) for i in range(11) for j in range(11)]
    expected = (sum(inside) + (21 * 21 - 121)) / (21 * 21)
    assert float(ssim(spot, clean, variant="matlab")) == pytest.approx(expected, abs=1e-12)


def test_matlab_variant_accepts_small_images_and_rejects_unknown() -> None:
    a = torch.rand(3, 5, 7)
    assert float(ssim(a, a, variant="matlab")) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(a, a, variant="basicsr")
    with pytest.raises(ValueError, match="'basicsr' or 'matlab'"):
        ssim(torch.rand(3, 16, 16), torch.rand(3, 16, 16), variant="octave")  # type: ignore


# --------------------------------------------------------------------------- quantization
def test_quantize_round_and_truncate_by_hand() -> None:
    x = torch.tensor([-0.2, 0.4 / 255, 0.6 / 255, 100.6 / 255, 0.999, 1.0, 1.3])
    assert quantize_8bit(x).mul(255).tolist() == pytest.approx([0, 0, 1, 101, 255, 255, 255])
    assert quantize_8bit(x, "truncate").mul(255).tolist() == pytest.approx(
        [0, 0, 0, 100, 254, 255, 255])
    with pytest.raises(ValueError, match="'round' or 'truncate'"):
        quantize_8bit(x, "nearest")  # type: ignore[arg-type]


def test_truncate_equals_numpy_uint8_of_float32() -> None:
    # PReNet: out = torch.clamp(out, 0, 1); np.uint8(255 * out.numpy()) (float32 product).
    values = torch.rand(4096, generator=torch.Generator().manual_seed(5)) * 1.2 - 0.1
    expected = np.uint8(255 * values.clamp(0, 1).numpy()).astype(np.float64)
    got = quantize_8bit(values, "truncate").double().mul(255).round().numpy()
    assert np.array_equal(got, expected)
    assert quantize_8bit(values).dtype == torch.float32
