"""Seeded degradation synthesizers on RGB [0, 1] batches ``(N, 3, H, W)``.

Each synthesizer takes clean images and returns ``(degraded, params)`` where ``params`` maps
every parameter name to a list with one JSON-ready value per image (the manifest of
``dreamprune synth``). Every parameter may be given (a number for the whole batch, or one
value per image); a parameter left ``None`` is drawn from the documented range with
``generator`` (default: torch's global generator). Lengths and radii are in pixels, so a
degradation looks the same on a crop and on a whole photograph.

* :func:`rain_streaks`: Rain100L/H-style streaks (Yang et al. 2017: sparse noise, motion
  blur along an angle, additive composition, rain accumulation veil).
* :func:`raindrops`: adherent drops on glass as in the RainDrop set of AGANet (Qian et al.
  2018): each drop is a small lens showing a blurred, inverted, magnified view of the scene,
  with a dark outline, a bright rim and a specular highlight, out of focus.
* :func:`kornia_rain`: a second, cruder rain renderer on kornia's ``RandomRain`` (straight
  aliased lines of one length and slant per image), softened and added with a random opacity;
  training teachers on both renderers keeps them from learning one synthesizer's look.
* :func:`haze`: the atmospheric scattering model used by RESIDE,
  ``I = J t + A (1 - t)`` with ``t = exp(-beta d)`` over a smooth random depth ``d``;
  :func:`scene_depth` gives a depth whose steps follow the scene's objects, as real depth does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import kornia
import torch
import torch.nn.functional as F

from dreamprune_cli.data.noise import fractal_noise

__all__ = ["haze", "kornia_rain", "random_depth", "raindrops", "rain_streaks", "scene_depth",
           "transmission", "Params", "RAIN_RANGES", "KORNIA_RAIN_RANGES", "DROP_RANGES",
           "HAZE_RANGES"]

Params = dict[str, list]
Value = float | Sequence[float] | torch.Tensor | None

# Ranges (inclusive) from which unspecified parameters are drawn uniformly (``log``: in log
# space). Wide on purpose: networks trained on them should meet most real conditions.
RAIN_RANGES: dict[str, tuple[float, float]] = {
    "density": (0.001, 0.02),    # fraction of pixels seeding a streak, per layer (log)
    "length": (6.0, 36.0),       # streak length in pixels
    "angle": (-35.0, 35.0),      # degrees from vertical; positive leans the top to the right
    "width": (0.5, 2.2),         # streak thickness in pixels (Gaussian sigma of the seeds x 2)
    "brightness": (0.2, 0.8),    # peak opacity of a streak (screen blend)
    "veil": (0.0, 0.25),         # rain-accumulation veil: I = (1 - veil) I + veil A
    "layers": (1, 3),            # streak layers (directions jittered by up to 10 degrees)
}
KORNIA_RAIN_RANGES: dict[str, tuple[float, float]] = {
    "drops": (0.5, 6.0),         # drops per 1000 pixels (log)
    "length": (4.0, 48.0),       # drop height in pixels (capped below the image height)
    "slant": (-0.5, 0.5),        # horizontal run per pixel of height (0: vertical)
    "brightness": (0.15, 0.7),   # peak opacity of a drop (screen blend)
    "softness": (0.0, 1.0),      # Gaussian sigma (px) of the drops' edges (0: aliased lines)
}
DROP_RANGES: dict[str, tuple[float, float]] = {
    "drops": (0.6, 4.0),         # drops per 1000 pixels (log)
    "radius": (3.0, 16.0),       # largest drop radius in pixels (radii ~ r^-2 from 1.5 px)
    "refraction": (1.0, 2.5),    # lens minification: inside a drop, p -> c - k (p - c)
    "blur": (1.0, 3.5),          # Gaussian sigma (px) of the scene seen through the drops
    "rim": (0.1, 0.45),          # brightness of the rim and highlight
    "softness": (0.5, 1.8),      # out-of-focus edge width in pixels
}
HAZE_RANGES: dict[str, tuple[float, float]] = {
    "beta": (0.3, 2.5),          # scattering coefficient (depth normalised to [0, 1])
    "airlight": (0.7, 1.0),      # atmospheric light A (grey level; tinted by +-0.04 per channel)
    "near": (0.0, 0.4),          # depth of the nearest point (the farthest is 1)
    "scene_weight": (0.3, 0.8),  # scene_depth: share of the depth that follows the scene
}
_LOG_PARAMS = {"density", "drops"}


def _check_images(images: torch.Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected RGB images (N, 3, H, W), got {tuple(images.shape)}")


def _per_image(value: Value, count: int, name: str, ranges: dict[str, tuple[float, float]],
               generator: torch.Generator | None) -> torch.Tensor:
    """``value`` as a float ``(count,)`` tensor; ``None`` draws from ``ranges[name]``."""
    if value is None:
        low, high = ranges[name]
        u = torch.rand((count,), generator=generator)
        if name in _LOG_PARAMS:
            return torch.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        return low + u * (high - low)
    tensor = torch.as_tensor(value, dtype=torch.float32).flatten()
    if tensor.numel() == 1:
        return tensor.expand(count).clone()
    if tensor.numel() != count:
        raise ValueError(f"{name}: expected one value or {count} (one per image), "
                         f"got {tensor.numel()}")
    return tensor.clone()


def _as_list(values: torch.Tensor, digits: int = 4) -> list:
    return [round(float(v), digits) for v in values]


def _motion_kernel(length: int, angle: float) -> torch.Tensor:
    """kornia's line kernel of ``length`` pixels at ``angle`` degrees from vertical, peak 1.

    kornia measures angles from the horizontal axis, counter-clockwise on screen; our angle
    leans the streak's top to the right for positive values.
    """
    kernel = kornia.filters.get_motion_kernel2d(length, 90.0 - angle, 0.0, mode="bilinear")
    return kernel / kernel.amax(dim=(-2, -1), keepdim=True)


def rain_streaks(images: torch.Tensor, generator: torch.Generator | None = None, *,
                 density: Value = None, length: Value = None, angle: Value = None,
                 width: Value = None, brightness: Value = None, veil: Value = None,
                 layers: Value = None) -> tuple[torch.Tensor, Params]:
    """Add rain streaks (Rain100L/H-like) to ``images``.

    Per layer: seeds ``s = [u < density] * U(0.4, 1)`` (sparse noise of varied intensity) are
    widened by a Gaussian blur (sigma ``width / 2``, renormalised), smeared by kornia's
    motion-blur line kernel of ``length`` pixels at ``angle`` (peak-normalised, so a streak
    keeps its seed's intensity), scaled by ``brightness``. Layers after the first jitter the
    angle by up to 10 degrees and scale length and density. The streak layer
    ``S = clamp(sum_l S_l, 0, 1)`` is screen-blended (light adds less where the scene is
    already bright, as in photographs) and a veil added:
    ``I = (1 - veil) * (1 - (1 - J)(1 - S)) + veil * A`` with a grey airlight ``A ~ U(0.75, 1)``.

    Args:
        images: clean RGB ``(N, 3, H, W)`` in [0, 1].
        generator: source of every random draw.
        density, length, angle, width, brightness, veil, layers: see :data:`RAIN_RANGES`.

    Returns:
        The rainy images (same shape, in [0, 1]) and the parameters per image.
    """
    _check_images(images)
    n, _, height, width_px = images.shape
    g = generator
    p = {name: _per_image(value, n, name, RAIN_RANGES, g) for name, value in
         (("density", density), ("length", length), ("angle", angle), ("width", width),
          ("brightness", brightness), ("veil", veil))}
    if layers is None:
        n_layers = torch.randint(int(RAIN_RANGES["layers"][0]), int(RAIN_RANGES["layers"][1]) + 1,
                                 (n,), generator=g)
    else:
        n_layers = _per_image(layers, n, "layers", RAIN_RANGES, g).round().long()
    if (n_layers < 1).any() or (p["length"] < 1).any() or (p["width"] <= 0).any():
        raise ValueError("rain_streaks: layers and length must be >= 1 and width > 0")
    airlight = 0.75 + 0.25 * torch.rand((n,), generator=g)
    rain = torch.zeros(n, 1, height, width_px)
    for layer in range(int(n_layers.max())):
        jitter = torch.zeros(n) if layer == 0 else (torch.rand((n,), generator=g) - 0.5) * 20.0
        stretch = torch.ones(n) if layer == 0 else 0.5 + 0.7 * torch.rand((n,), generator=g)
        thin = torch.ones(n) if layer == 0 else 0.3 + 0.7 * torch.rand((n,), generator=g)
        seeds = (torch.rand((n, 1, height, width_px), generator=g)
                 < (p["density"] * thin).view(n, 1, 1, 1)).float()
        seeds = seeds * (0.4 + 0.6 * torch.rand((n, 1, height, width_px), generator=g))
        for i in range(n):
            if layer >= int(n_layers[i]):
                continue
            sigma = float(p["width"][i]) / 2.0
            ksize = 2 * math.ceil(3 * sigma) + 1
            seed_i = kornia.filters.gaussian_blur2d(seeds[i:i + 1], (ksize, ksize),
                                                    (sigma, sigma))
            # Renormalise so that a lone seed keeps its peak after widening.
            seed_i = seed_i * (2 * math.pi * sigma * sigma) if sigma > 0.4 else seeds[i:i + 1]
            length_i = max(1, int(round(float(p["length"][i] * stretch[i]))))
            length_i += 1 - length_i % 2  # kornia wants an odd kernel size
            kernel = _motion_kernel(length_i, float(p["angle"][i] + jitter[i]))
            streak = kornia.filters.filter2d(seed_i, kernel, border_type="constant")
            rain[i:i + 1] += streak.clamp(0.0, 1.0) * p["brightness"][i]
    out = 1.0 - (1.0 - images) * (1.0 - rain.clamp(0.0, 1.0))
    veil_ = p["veil"].view(n, 1, 1, 1)
    out = (1.0 - veil_) * out + veil_ * airlight.view(n, 1, 1, 1)
    params: Params = {name: _as_list(value) for name, value in p.items()}
    params["layers"] = [int(v) for v in n_layers]
    params["airlight"] = _as_list(airlight)
    return out.clamp(0.0, 1.0), params


def kornia_rain(images: torch.Tensor, generator: torch.Generator | None = None, *,
                drops: Value = None, length: Value = None, slant: Value = None,
                brightness: Value = None, softness: Value = None
                ) -> tuple[torch.Tensor, Params]:
    """Add rain drawn by kornia's ``RandomRain`` (kornia.augmentation), made additive.

    ``RandomRain`` writes straight one-pixel lines of a constant grey; here it draws them on a
    black layer, which becomes a 0/1 streak mask: ``drops`` per 1000 pixels, each ``length``
    pixels tall with a horizontal run of ``slant * length`` pixels, softened by a Gaussian of
    sigma ``softness`` (renormalised to peak 1), scaled by ``brightness`` and screen-blended
    like :func:`rain_streaks` (no veil). kornia draws from torch's global generator; this
    function seeds it from ``generator`` inside ``torch.random.fork_rng``, so the result is
    fixed by ``generator`` and the caller's global state is left untouched.

    Args:
        images: clean RGB ``(N, 3, H, W)`` in [0, 1], ``H, W >= 8``.
        generator: source of every random draw.
        drops, length, slant, brightness, softness: see :data:`KORNIA_RAIN_RANGES`.

    Returns:
        The rainy images (same shape, in [0, 1]) and the parameters per image.

    Raises:
        ValueError: images not ``(N, 3, H, W)`` or smaller than 8 pixels, or a negative length.
    """
    from kornia.augmentation import RandomRain

    _check_images(images)
    n, _, height, width = images.shape
    if min(height, width) < 8:
        raise ValueError(f"kornia_rain: images must be at least 8 x 8, got {height} x {width}")
    g = generator
    p = {name: _per_image(value, n, name, KORNIA_RAIN_RANGES, g) for name, value in
         (("drops", drops), ("length", length), ("slant", slant), ("brightness", brightness),
          ("softness", softness))}
    if (p["length"] < 1).any() or (p["softness"] < 0).any():
        raise ValueError("kornia_rain: length must be >= 1 and softness >= 0")
    seeds = torch.randint(0, 2**31 - 1, (n,), generator=g)
    masks = []
    for i in range(n):
        tall = int(min(max(1.0, round(float(p["length"][i]))), height - 1))
        run = int(round(float(p["slant"][i]) * tall))
        run = max(-(width - 1), min(width - 1, run))
        count = max(1, int(round(float(p["drops"][i]) * height * width / 1000.0)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seeds[i]))
            rain = RandomRain(p=1.0, number_of_drops=(count, count), drop_height=(tall, tall),
                              drop_width=(run, run))
            layer = rain(torch.zeros(1, 1, height, width))
        mask = (layer > 0).float()
        sigma = float(p["softness"][i])
        if sigma > 0.3:
            ksize = 2 * math.ceil(3 * sigma) + 1
            mask = kornia.filters.gaussian_blur2d(mask, (ksize, ksize), (sigma, sigma))
            mask = mask / mask.amax().clamp_min(1e-6)
        masks.append(mask)
    streaks = torch.cat(masks) * p["brightness"].view(n, 1, 1, 1)
    out = 1.0 - (1.0 - images) * (1.0 - streaks.clamp(0.0, 1.0))
    return out.clamp(0.0, 1.0), {name: _as_list(value) for name, value in p.items()}


def raindrops(images: torch.Tensor, generator: torch.Generator | None = None, *,
              drops: Value = None, radius: Value = None, refraction: Value = None,
              blur: Value = None, rim: Value = None,
              softness: Value = None) -> tuple[torch.Tensor, Params]:
    """Add adherent raindrops (AGANet's RainDrop-like) to ``images``.

    ``drops`` per 1000 pixels are placed uniformly with radii ``p(r) ~ r^-2`` on
    ``[1.5, radius]`` pixels, elliptical (axis ratio 0.75-1.25) with a wobbly outline. Inside
    a drop centred at ``c`` the pixel ``p`` shows the scene at ``c - refraction (p - c)``
    (an inverted, minified lens view) blurred by ``blur``, slightly brightened, with a dark
    outline, a bright rim on the lower edge and a specular highlight near the top; the drop's
    coverage has an out-of-focus edge ``softness`` pixels wide. Later drops cover earlier ones.

    Returns:
        The images with drops and the parameters per image (``count`` is the drop count).
    """
    _check_images(images)
    n, _, height, width = images.shape
    g = generator
    p = {name: _per_image(value, n, name, DROP_RANGES, g) for name, value in
         (("drops", drops), ("radius", radius), ("refraction", refraction), ("blur", blur),
          ("rim", rim), ("softness", softness))}
    if (p["radius"] < 1.5).any() or (p["softness"] <= 0).any() or (p["blur"] < 0).any():
        raise ValueError("raindrops: radius must be >= 1.5, softness > 0 and blur >= 0")
    counts = (p["drops"] * height * width / 1000.0).round().long().clamp(min=0)
    m = int(counts.max()) if n else 0
    yy, xx = torch.meshgrid(torch.arange(height, dtype=torch.float32) + 0.5,
                            torch.arange(width, dtype=torch.float32) + 0.5, indexing="ij")
    source_y = yy.expand(n, height, width).clone()
    source_x = xx.expand(n, height, width).clone()
    coverage = torch.zeros(n, 1, height, width)
    shading = torch.zeros(n, 1, height, width)   # additive brightness inside drops
    darkening = torch.zeros(n, 1, height, width)
    # Drop parameters, (n, m).
    u = torch.rand((n, m), generator=g)
    r_lo = torch.full((n, 1), 1.5)
    r_hi = p["radius"].view(n, 1)
    radii = 1.0 / (1.0 / r_lo - u * (1.0 / r_lo - 1.0 / r_hi))  # p(r) ~ r^-2
    cy = torch.rand((n, m), generator=g) * height
    cx = torch.rand((n, m), generator=g) * width
    ratio = 0.75 + 0.5 * torch.rand((n, m), generator=g)
    wobble = 0.08 * torch.rand((n, m), generator=g)
    phase = 2 * math.pi * torch.rand((n, m), generator=g)
    gain = 1.0 + 0.15 * torch.rand((n, m), generator=g)
    present = torch.arange(m).view(1, m) < counts.view(n, 1)
    for j in range(m):
        ry = radii[:, j].view(n, 1, 1)
        rx = ry * ratio[:, j].view(n, 1, 1)
        dy, dx = yy - cy[:, j].view(n, 1, 1), xx - cx[:, j].view(n, 1, 1)
        theta = torch.atan2(dy, dx)
        rho = torch.sqrt((dx / rx) ** 2 + (dy / ry) ** 2) \
            / (1.0 + wobble[:, j].view(n, 1, 1) * torch.sin(3 * theta + phase[:, j].view(n, 1, 1)))
        edge_px = (1.0 - rho) * torch.minimum(rx, ry)
        alpha = torch.sigmoid(edge_px / p["softness"].view(n, 1, 1) * 1.7) \
            * present[:, j].view(n, 1, 1)
        inside = (rho < 1.25).float() * alpha
        k = p["refraction"].view(n, 1, 1)
        source_y = source_y + inside * (cy[:, j].view(n, 1, 1) - k * dy - source_y)
        source_x = source_x + inside * (cx[:, j].view(n, 1, 1) - k * dx - source_x)
        ring = torch.exp(-((rho - 0.88) / 0.1) ** 2)
        lower = (dy / ry).clamp(0.0, 1.0)
        highlight = torch.exp(-(((dx / rx) + 0.35) ** 2 + ((dy / ry) + 0.45) ** 2) / 0.02)
        rim_ = p["rim"].view(n, 1, 1)
        shade_j = (gain[:, j].view(n, 1, 1) - 1.0) + rim_ * (ring * lower + highlight)
        dark_j = 0.5 * ring * (1.0 - lower)
        a = alpha.unsqueeze(1)
        coverage = coverage + a * (1.0 - coverage)
        shading = shading + a * (shade_j.unsqueeze(1) - shading)
        darkening = darkening + a * (dark_j.unsqueeze(1) - darkening)
    # The scene seen through the drops: blurred, then sampled at the lens positions.
    sigma = p["blur"].clamp_min(1e-3)
    ksize = 2 * math.ceil(3 * float(sigma.max())) + 1
    blurred = kornia.filters.gaussian_blur2d(images, (ksize, ksize),
                                             sigma.view(n, 1).repeat(1, 2), border_type="reflect")
    grid = torch.stack([source_x / width * 2 - 1, source_y / height * 2 - 1], dim=-1)
    seen = F.grid_sample(blurred, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)
    drop_colour = seen * (1.0 - darkening) + shading
    out = images + coverage * (drop_colour - images)
    params: Params = {name: _as_list(value) for name, value in p.items()}
    params["count"] = [int(c) for c in counts]
    return out.clamp(0.0, 1.0), params


def _unit_range(maps: torch.Tensor) -> torch.Tensor:
    """Each map of ``(N, 1, H, W)`` rescaled to [0, 1] (min to 0, max to 1)."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    high = maps.amax(dim=(-2, -1), keepdim=True)
    return (maps - low) / (high - low).clamp_min(1e-6)


def random_depth(count: int, height: int, width: int, generator: torch.Generator | None = None,
                 near: Value = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random depth maps ``(count, 1, H, W)`` in ``[near, 1]``, and ``near``.

    A mix of a vertical ramp (farther towards the top, as outdoors), a horizontal ramp and
    low-frequency fractal noise, normalised per image to ``[near, 1]``.
    """
    g = generator
    near_t = _per_image(near, count, "near", HAZE_RANGES, g)
    side = max(height, width)
    rows = torch.linspace(1.0, 0.0, height).view(1, 1, height, 1)
    cols = torch.linspace(-1.0, 1.0, width).view(1, 1, 1, width)
    w_vertical = torch.rand((count, 1, 1, 1), generator=g) * 1.5
    w_horizontal = (torch.rand((count, 1, 1, 1), generator=g) - 0.5) * 1.0
    w_noise = 0.2 + 0.6 * torch.rand((count, 1, 1, 1), generator=g)
    noise = fractal_noise(count, 1, side, g, slope=2.2)[..., :height, :width]
    depth = w_vertical * rows + w_horizontal * cols + w_noise * noise
    depth = _unit_range(depth)
    nv = near_t.view(count, 1, 1, 1)
    return nv + (1.0 - nv) * depth, near_t


def scene_depth(images: torch.Tensor, generator: torch.Generator | None = None,
                near: Value = None, scene_weight: Value = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth maps ``(N, 1, H, W)`` in ``[near, 1]`` whose steps follow the scene's objects.

    Real depth jumps at object boundaries and is nearly constant across an object's texture;
    :func:`random_depth` is smooth everywhere. Here a random colour projection of the clean
    ``images`` is median-filtered (kornia, 5 x 5: removes fine texture, keeps edges) and mixed
    with :func:`random_depth`'s smooth field, ``scene_weight`` (default U(0.3, 0.8)) of the
    mixture coming from the scene, then normalised per image to ``[near, 1]``.

    Args:
        images: clean RGB ``(N, 3, H, W)`` in [0, 1].

    Returns:
        The depth maps and ``near`` per image ``(N,)``.
    """
    _check_images(images)
    n, _, height, width = images.shape
    g = generator
    smooth, near_t = random_depth(n, height, width, g, near)
    weight = _per_image(scene_weight, n, "scene_weight", HAZE_RANGES, g)
    mix = torch.rand((n, 3), generator=g) * 2.0 - 1.0
    projection = (images * mix.view(n, 3, 1, 1)).sum(dim=1, keepdim=True)
    structure = kornia.filters.median_blur(projection, (5, 5))
    structure = _unit_range(structure)
    w = weight.view(n, 1, 1, 1)
    depth = (1.0 - w) * smooth + w * structure
    depth = _unit_range(depth)
    nv = near_t.view(n, 1, 1, 1)
    return nv + (1.0 - nv) * depth, near_t


def transmission(depth: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
    """``t = exp(-beta d)``, in (0, 1] for ``beta >= 0`` and ``d >= 0``."""
    beta_t = torch.as_tensor(beta, dtype=depth.dtype).reshape(-1, 1, 1, 1)
    return torch.exp(-beta_t * depth)


def haze(images: torch.Tensor, generator: torch.Generator | None = None, *,
         beta: Value = None, airlight: Value = None, depth: torch.Tensor | None = None,
         near: Value = None) -> tuple[torch.Tensor, Params]:
    """Add haze with the atmospheric scattering model ``I = J t + A (1 - t)``.

    ``t = exp(-beta d)``; ``d`` is ``depth`` when given (``(N, 1, H, W)``, any non-negative
    scale), else :func:`random_depth` in ``[near, 1]``. ``A`` is ``airlight`` (a grey level;
    each channel is tinted by up to +-0.04, bluish or yellowish haze). ``beta = 0`` returns
    the images unchanged.

    Returns:
        The hazy images and the parameters per image (``airlight`` as RGB triples,
        ``t_mean`` the mean transmission).
    """
    _check_images(images)
    n, _, height, width = images.shape
    g = generator
    beta_t = _per_image(beta, n, "beta", HAZE_RANGES, g)
    grey = _per_image(airlight, n, "airlight", HAZE_RANGES, g)
    if (beta_t < 0).any():
        raise ValueError("haze: beta must be >= 0")
    tint = (torch.rand((n, 3), generator=g) - 0.5) * 0.08 if airlight is None \
        else torch.zeros(n, 3)
    light = (grey.view(n, 1) + tint).clamp(0.0, 1.0)
    if depth is None:
        depth, near_t = random_depth(n, height, width, g, near)
    else:
        if depth.shape != (n, 1, height, width) or (depth < 0).any():
            raise ValueError(f"haze: depth must be non-negative (N, 1, H, W) = "
                             f"{(n, 1, height, width)}, got {tuple(depth.shape)}")
        near_t = depth.amin(dim=(1, 2, 3))
    t = transmission(depth, beta_t)
    out = images * t + light.view(n, 3, 1, 1) * (1.0 - t)
    params: Params = {"beta": _as_list(beta_t), "airlight": [_as_list(c) for c in light],
                      "near": _as_list(near_t), "t_mean": _as_list(t.mean(dim=(1, 2, 3)))}
    return out.clamp(0.0, 1.0), params
