"""PSNR and SSIM as published restoration numbers are computed (BasicSR's protocol).

Per image, in float64, on the 0-255 scale:

* ``rgb``: all three channels; ``y``: the luma of BT.601 YCbCr as MATLAB's ``rgb2ycbcr``
  gives it, ``Y = 16 + (65.481 R + 128.553 G + 24.966 B)`` with R, G, B in [0, 1].
* ``crop_border`` pixels are removed from every side first.
* PSNR: ``10 log10(255^2 / MSE)``; identical images give ``inf``.
* SSIM, two variants (:data:`SsimVariant`), both with an 11x11 Gaussian window (sigma 1.5)
  and averaged over channels:

  - ``basicsr``: Wang et al. 2004 as BasicSR computes it: ``C1 = (0.01 * 255)^2``,
    ``C2 = (0.03 * 255)^2``, over the *valid* region (no padding; the map is
    ``(H - 10) x (W - 10)``).
  - ``matlab``: MATLAB's built-in ``ssim(A, ref)`` called on double images scaled to 0-255,
    as PReNet's ``statistic/*.m`` call ``ssim`` (their published SSIMs match ``basicsr``, i.e.
    Wang's ``ssim.m`` was the one on their path): the default dynamic range of a double is 1, so
    ``C1 = (0.01 * 1)^2`` and ``C2 = (0.03 * 1)^2``; ``imfilter(..., 'conv', 'replicate')``
    pads by replicating the border and keeps the map ``H x W``; the variances are clamped at
    0 (``max(sigma^2, 0)``, as recent MATLAB releases do).

* Outputs are turned into 8-bit levels first (:func:`quantize_8bit`): ``round`` (a saved
  PNG) or ``truncate`` (``np.uint8(255 * x)``, PReNet's test script).

The Gaussian filtering is separable: two 1-D passes in float64 over the statistics
(``x, y, x^2, y^2, xy``; ``x^2 + y^2`` as one map where only the variances' sum is used)
at once, in bands of rows that stay in the CPU's cache, equal to the 2-D filtering to
rounding (about 1e-13 on 0-255 data). kornia's own ``psnr``/``ssim``
are not used because they take one MSE over a whole batch and pad SSIM to the same size.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

MetricSpace = Literal["y", "rgb"]
SsimVariant = Literal["basicsr", "matlab"]
Quantization = Literal["round", "truncate"]

_Y_WEIGHTS = (65.481, 128.553, 24.966)
SSIM_WINDOW = 11  # side of the Gaussian window: SSIM needs images at least this large


def quantize_8bit(image: torch.Tensor, mode: Quantization = "round") -> torch.Tensor:
    """Clamp to [0, 1] and map to the 8-bit levels ``k / 255``, in ``image``'s dtype.

    ``round``: ``round(255 x) / 255``, as a saved PNG would be. ``truncate``:
    ``floor(255 x) / 255``, what ``np.uint8(255 * out)`` gives after ``torch.clamp(out, 0, 1)``
    (PReNet's ``test_PReNet.py``). The product is taken in the image's dtype (float32
    there), as NumPy does.

    Raises:
        ValueError: ``mode`` is neither ``round`` nor ``truncate``.

    Example:
        >>> quantize_8bit(torch.tensor([0.999]), "truncate").mul(255).item()
        254.0
    """
    scaled = image.clamp(0, 1).mul(255)
    if mode == "round":
        return scaled.round().div(255)
    if mode == "truncate":
        return scaled.floor().div(255)
    raise ValueError(f"quantization must be 'round' or 'truncate', got {mode!r}")


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


_RADIUS = 5  # the 11-tap window: ceil(3 * 1.5) = 5 on each side
_SIGMA = 1.5


def gaussian_kernel_1d(dtype: torch.dtype = torch.float64,
                       device: torch.device | None = None) -> torch.Tensor:
    """The normalised 11-tap Gaussian (sigma 1.5); its outer product is ``fspecial('gaussian',
    11, 1.5)`` and BasicSR's ``cv2.getGaussianKernel(11, 1.5)`` window. Shape ``(11,)``."""
    coords = torch.arange(-_RADIUS, _RADIUS + 1, dtype=torch.float64)
    kernel = torch.exp(-coords**2 / (2 * _SIGMA**2))
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def _filter_valid(maps: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Separable valid-region filtering of ``(..., H, W)``: ``(..., H - 10, W - 10)``.

    Shift-and-add with one scalar weight per tap (no im2col copies): 11 passes along the
    width, then 11 along the height.
    """
    taps = [float(w) for w in kernel]
    width = maps.shape[-1] - 2 * _RADIUS
    rows = maps[..., 0:width] * taps[0]
    for k in range(1, len(taps)):
        rows.add_(maps[..., k:k + width], alpha=taps[k])
    height = maps.shape[-2] - 2 * _RADIUS
    out = rows[..., 0:height, :] * taps[0]
    for k in range(1, len(taps)):
        out.add_(rows[..., k:k + height, :], alpha=taps[k])
    return out


_BAND_ROWS = 16  # SSIM map rows computed together (see _ssim_means)


def _ssim_band(a: torch.Tensor, b: torch.Tensor, kernel: torch.Tensor, c1: float, c2: float,
               clamp_variances: bool) -> torch.Tensor:
    """SSIM map of ``(M, R + 10, W)`` float64 planes: ``(M, R, W - 10)``.

    The statistics ``a, b, a^2, b^2, ab`` are filtered in one call. Only the sum of the two
    variances enters the formula, so without clamping ``a^2 + b^2`` is filtered as one map
    (four maps instead of five); MATLAB's variant clamps each variance and needs both.
    """
    maps = a.new_empty((5 if clamp_variances else 4, *a.shape))
    maps[0].copy_(a)
    maps[1].copy_(b)
    torch.mul(a, a, out=maps[2])
    if clamp_variances:
        torch.mul(b, b, out=maps[3])
    else:
        maps[2].addcmul_(b, b)
    torch.mul(a, b, out=maps[-1])
    filtered = _filter_valid(maps, kernel)
    mu_a, mu_b, mean_ab = filtered[0], filtered[1], filtered[-1]
    mu_ab, mu_aa, mu_bb = mu_a * mu_b, mu_a * mu_a, mu_b * mu_b
    if clamp_variances:
        variances = filtered[2].sub_(mu_aa).clamp_(min=0).add_(
            filtered[3].sub_(mu_bb).clamp_(min=0))
    else:
        variances = filtered[2].sub_(mu_aa).sub_(mu_bb)
    numerator = (2 * mu_ab + c1).mul_(mean_ab.sub_(mu_ab).mul_(2).add_(c2))
    denominator = mu_aa.add_(mu_bb).add_(c1).mul_(variances.add_(c2))
    return numerator.div_(denominator)


def _ssim_means(a: torch.Tensor, b: torch.Tensor, variant: SsimVariant) -> torch.Tensor:
    """Mean SSIM of each of the ``(M, H, W)`` float64 planes on the 0-255 scale: ``(M,)``.

    The map is computed in bands of :data:`_BAND_ROWS` rows (each band's five filtered
    statistics stay in the CPU's cache, about twice as fast as whole-image passes); the
    values are those of a whole-image computation.
    """
    kernel = gaussian_kernel_1d(device=a.device)
    if variant == "matlab":
        a = F.pad(a.unsqueeze(0), (_RADIUS,) * 4, mode="replicate").squeeze(0)
        b = F.pad(b.unsqueeze(0), (_RADIUS,) * 4, mode="replicate").squeeze(0)
        c1, c2 = (0.01 * 1.0) ** 2, (0.03 * 1.0) ** 2
    elif variant == "basicsr":
        c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    else:
        raise ValueError(f"SSIM variant must be 'basicsr' or 'matlab', got {variant!r}")
    height = a.shape[-2] - 2 * _RADIUS
    total = a.new_zeros(a.shape[0])
    for top in range(0, height, _BAND_ROWS):
        rows = slice(top, min(top + _BAND_ROWS, height) + 2 * _RADIUS)
        band = _ssim_band(a[:, rows], b[:, rows], kernel, c1, c2, variant == "matlab")
        total += band.sum(dim=(-2, -1))
    return total / (height * (a.shape[-1] - 2 * _RADIUS))


def ssim(output: torch.Tensor, target: torch.Tensor, space: MetricSpace = "rgb",
         crop_border: int = 0, variant: SsimVariant = "basicsr") -> torch.Tensor:
    """Per-image SSIM of ``(N, 3, H, W)`` (or ``(3, H, W)``) images in [0, 1].

    ``variant`` (see the module docstring): ``basicsr`` filters the valid region (the map is
    ``(H - 10) x (W - 10)``, the image must be at least 11x11 after cropping); ``matlab`` pads
    by replicating the border (the map is ``H x W``). In ``rgb`` space each channel is scored
    as a 2-D image and the three are averaged (MATLAB's ``ssim`` on an ``H x W x 3`` array
    would instead filter it as a 3-D volume; PReNet's scripts score Y only).
    Returns float64 of shape ``(N,)`` (or a scalar).

    Raises:
        ValueError: shape mismatch, unknown variant, or an image too small for the window.
    """
    if output.shape != target.shape:
        raise ValueError(f"shape mismatch: {tuple(output.shape)} vs {tuple(target.shape)}")
    if variant not in ("basicsr", "matlab"):
        raise ValueError(f"SSIM variant must be 'basicsr' or 'matlab', got {variant!r}")
    single = output.dim() == 3
    a = _crop(to_metric_space(output, space), crop_border)
    b = _crop(to_metric_space(target, space), crop_border)
    if single:
        a, b = a.unsqueeze(0), b.unsqueeze(0)
    if variant == "basicsr" and (a.shape[-1] < 11 or a.shape[-2] < 11):
        raise ValueError(f"SSIM needs images of at least 11x11 after cropping, "
                         f"got {a.shape[-2]}x{a.shape[-1]}")
    n, c, h, w = a.shape
    per_plane = _ssim_means(a.reshape(n * c, h, w), b.reshape(n * c, h, w), variant)
    per_image = per_plane.reshape(n, c).mean(dim=-1)
    return per_image[0] if single else per_image
