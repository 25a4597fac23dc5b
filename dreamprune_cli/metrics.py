"""PSNR and SSIM as published restoration numbers are computed (BasicSR's protocol).

Per image, in float64, on the 0-255 scale:

* ``rgb``: all three channels; ``y``: the luma of BT.601 YCbCr as MATLAB's ``rgb2ycbcr``
  gives it, ``Y = 16 + (65.481 R + 128.553 G + 24.966 B)`` with R, G, B in [0, 1].
* ``crop_border`` pixels are removed from every side first.
* PSNR: ``10 log10(255^2 / MSE)``; identical images give ``inf``.
* SSIM: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), ``C1 = (0.01 * 255)^2``,
  ``C2 = (0.03 * 255)^2``, over the *valid* region (no padding), averaged over channels.

kornia provides the Gaussian kernel; its own ``psnr``/``ssim`` are not used because they take
one MSE over a whole batch and pad SSIM to the same size.
"""

from __future__ import annotations

from typing import Literal

import kornia
import torch
import torch.nn.functional as F

MetricSpace = Literal["y", "rgb"]

_Y_WEIGHTS = (65.481, 128.553, 24.966)
SSIM_WINDOW = 11  # side of the Gaussian window: SSIM needs images at least this large


def quantize_8bit(image: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to 8-bit levels, as a saved PNG would be."""
    return image.clamp(0, 1).mul(255).round().div(255)


def to_metric_space(image: torch.Tensor, space: MetricSpace) -> torch.Tensor:
    """``(..., 3, H, W)`` RGB in [0, 1] -> float64 on the 0-255 scale in ``space``."""
    if image.shape[-3] != 3:
        raise ValueError(f"expected RGB images (..., 3, H, W), got {tuple(image.shape)}")
    image = image.double()
    if space == "rgb":
        return image * 255.0
    if space == "y":
        weights = image.new_tensor(_Y_WEIGHTS).view(3, 1, 1)
        return (image * weights).sum(dim=-3, keepdim=True) + 16.0
    raise ValueError(f"metric space must be 'y' or 'rgb', got {space!r}")


def _crop(image: torch.Tensor, border: int) -> torch.Tensor:
    if border < 0:
        raise ValueError(f"crop_border must be >= 0, got {border}")
    if border == 0:
        return image
    if image.shape[-1] <= 2 * border or image.shape[-2] <= 2 * border:
        raise ValueError(f"crop_border {border} leaves nothing of a "
                         f"{image.shape[-2]}x{image.shape[-1]} image")
    return image[..., border:-border, border:-border]


def psnr(output: torch.Tensor, target: torch.Tensor, space: MetricSpace = "rgb",
         crop_border: int = 0) -> torch.Tensor:
    """Per-image PSNR in dB of ``(N, 3, H, W)`` (or ``(3, H, W)``) images in [0, 1].

    Returns a float64 tensor of shape ``(N,)`` (or a scalar); ``inf`` where identical.

    Example:
        >>> a = torch.zeros(1, 3, 8, 8); b = torch.full((1, 3, 8, 8), 1 / 255)
        >>> round(float(psnr(a, b)), 4)
        48.1308
    """
    if output.shape != target.shape:
        raise ValueError(f"shape mismatch: {tuple(output.shape)} vs {tuple(target.shape)}")
    a = _crop(to_metric_space(output, space), crop_border)
    b = _crop(to_metric_space(target, space), crop_border)
    mse = (a - b).pow(2).flatten(start_dim=-3).mean(dim=-1)
    return 10.0 * torch.log10(255.0**2 / mse)  # mse == 0 -> inf


def _gaussian_window(device: torch.device) -> torch.Tensor:
    kernel = kornia.filters.get_gaussian_kernel2d((11, 11), (1.5, 1.5))
    return kernel.to(device=device, dtype=torch.float64).view(1, 1, 11, 11)


def ssim(output: torch.Tensor, target: torch.Tensor, space: MetricSpace = "rgb",
         crop_border: int = 0) -> torch.Tensor:
    """Per-image SSIM of ``(N, 3, H, W)`` (or ``(3, H, W)``) images in [0, 1].

    Valid-region filtering (the map is ``(H - 10) x (W - 10)``), mean over channels.
    Returns float64 of shape ``(N,)`` (or a scalar).
    """
    if output.shape != target.shape:
        raise ValueError(f"shape mismatch: {tuple(output.shape)} vs {tuple(target.shape)}")
    single = output.dim() == 3
    a = _crop(to_metric_space(output, space), crop_border)
    b = _crop(to_metric_space(target, space), crop_border)
    if single:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    if a.shape[-1] < 11 or a.shape[-2] < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 after cropping, "
                         f"got {a.shape[-2]}x{a.shape[-1]}")
    n, c, h, w = a.shape
    window = _gaussian_window(a.device)
    a, b = a.reshape(n * c, 1, h, w), b.reshape(n * c, 1, h, w)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = F.conv2d(a, window), F.conv2d(b, window)
    var_a = F.conv2d(a * a, window) - mu_a**2
    var_b = F.conv2d(b * b, window) - mu_b**2
    cov = F.conv2d(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    per_image = ssim_map.view(n, c, -1).mean(dim=-1).mean(dim=-1)
    return per_image[0] if single else per_image
