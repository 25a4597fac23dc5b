"""Clean images without downloads: procedural dead-leaves scenes, or crops of a folder.

The dreaming engine needs clean targets of *any* content (the teacher's degradation
representation is content-agnostic) and the synthetic benchmark needs ground truth, so both
draw from a :class:`CleanSource`:

* :class:`ProceduralSource` renders *dead-leaves* scenes (Matheron; Lee, Mumford & Huang 2001),
  whose statistics are close to natural images': occluding shapes with a power-law size
  distribution (``p(r) ~ r^-2`` by default; ``r^-3`` is the scale-invariant law, which needs
  many more leaves to cover an image), soft edges of varying sharpness (focus),
  colours from a small per-image palette, textured fills (1/f fractal noise, stripes, warped
  stripes such as wood or fabric), shaded "spheres", thin lines (twigs, wires, which a
  deraining network must keep), smooth illumination gradients, optional defocus and a little
  sensor noise. Everything is vectorised over the batch: large leaves are drawn over the
  whole image a few at a time, small ones in a patch around their centre.
* :class:`FolderSource` takes random crops (and flips) from the images of a folder.

Both are deterministic for a given ``torch.Generator`` state; :func:`procedural_images` is the
seed-in, tensor-out shortcut.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Protocol, runtime_checkable

import kornia
import torch
import torch.nn.functional as F

from dreamprune_cli.data.images import IMAGE_SUFFIXES, check_readable, is_hidden, read_image
from dreamprune_cli.data.noise import fractal_noise
from dreamprune_cli.data.rooms import RoomSource
from dreamprune_cli.errors import UsageError

__all__ = ["CleanSource", "DepthSource", "FolderSource", "ProceduralSource", "SCENES",
           "fractal_noise", "procedural_images", "make_clean_source"]


@runtime_checkable
class CleanSource(Protocol):
    """Anything that hands out clean RGB images in [0, 1]."""

    def sample(self, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` images of ``size x size``, shape ``(count, 3, size, size)``, float32, CPU."""


def _uniform(generator: torch.Generator, shape: tuple[int, ...], low: float,
             high: float) -> torch.Tensor:
    return torch.rand(shape, generator=generator) * (high - low) + low


def _palette_colours(generator: torch.Generator, count: int, colours: int) -> torch.Tensor:
    """``(count, colours, 3)`` RGB colours: a grey level pushed along a random chroma.

    Saturation is mostly low with a tail of vivid colours, as in photographs.
    """
    grey = _uniform(generator, (count, colours, 1), 0.04, 0.96)
    chroma = torch.randn((count, colours, 3), generator=generator)
    chroma = chroma - chroma.mean(dim=-1, keepdim=True)
    chroma = chroma / chroma.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    saturation = torch.rand((count, colours, 1), generator=generator) ** 2 * 0.7
    return (grey + saturation * chroma).clamp(0.0, 1.0)


def _texture_bank(count: int, textures: int, size: int,
                  generator: torch.Generator) -> torch.Tensor:
    """Per-image textures ``(count, textures, size, size)``, zero-mean, about unit std.

    Each slot is fractal noise (random spectral slope), straight stripes, or stripes warped
    by noise (wood grain, fabric, ripples); frequencies up to a 3-pixel period.
    """
    flat = count * textures
    slope = _uniform(generator, (flat,), 0.4, 1.6)
    noise = fractal_noise(flat, 1, size, generator, slope=slope).view(count, textures, size, size)
    warp_field = fractal_noise(flat, 1, size, generator, slope=1.8).view(count, textures,
                                                                         size, size)
    axis = torch.linspace(0.0, 1.0, size)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    theta = _uniform(generator, (count, textures, 1, 1), 0.0, math.pi)
    # Log-uniform frequency in cycles per image: from broad bands to a 3-pixel period.
    max_cycles = max(size / 3.0, 3.0)
    cycles = torch.exp(_uniform(generator, (count, textures, 1, 1), math.log(2.0),
                                math.log(max_cycles)))
    phase = _uniform(generator, (count, textures, 1, 1), 0.0, 2 * math.pi)
    warp = _uniform(generator, (count, textures, 1, 1), 0.0, 3.0) \
        * (torch.rand((count, textures, 1, 1), generator=generator) < 0.5)
    stripes = torch.sin(2 * math.pi * cycles * (xx * torch.cos(theta) + yy * torch.sin(theta))
                        + phase + warp * warp_field) * math.sqrt(2.0)
    kind = torch.rand((count, textures, 1, 1), generator=generator)
    return torch.where(kind < 0.6, noise, stripes)


_PATCH_HALF = 12  # leaves reaching at most this many pixels from their centre use a patch
_ALPHA_FLOOR = 1.0 / 512  # coverage below this is zero, so a leaf has a finite footprint


def _leaf_layers(yy: torch.Tensor, xx: torch.Tensor, leaf: dict[str, torch.Tensor],
                 texture: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Coverage ``(n, k, H, W)`` and colour ``(n, k, 3, H, W)`` of ``k`` leaves.

    ``yy``/``xx`` are pixel-centre coordinates in image units broadcastable to
    ``(n, k, H, W)``; ``leaf`` holds ``(n, k)`` (``colour``, ``grad_u``: ``(n, k, 3)``)
    parameters; ``texture`` is each leaf's texture sampled on the same pixels.
    """
    n, k = leaf["radius"].shape

    def col(name: str) -> torch.Tensor:
        return leaf[name].reshape(n, k, 1, 1)

    r, asp, angle = col("radius"), col("aspect"), col("angle")
    dy, dx = yy - col("cy"), xx - col("cx")
    cos, sin = torch.cos(angle), torch.sin(angle)
    u = (dx * cos + dy * sin) / r
    v = (dy * cos - dx * sin) / (r * asp)
    side_u, side_v = r * size, r * asp * size  # half-axes in pixels
    box = torch.maximum((u.abs() - 1.0) * side_u, (v.abs() - 1.0) * side_v)
    rho = torch.sqrt(u * u + v * v)
    # First-order distance to the ellipse, in pixels: (rho - 1) / |grad rho|.
    ellipse = (rho - 1.0) * rho / torch.sqrt((u / side_u) ** 2 + (v / side_v) ** 2).clamp_min(1e-6)
    distance = torch.where(col("is_box") > 0, box, ellipse)
    alpha = torch.sigmoid(-distance / col("softness")) * col("active")
    alpha = torch.where(alpha < _ALPHA_FLOOR, torch.zeros_like(alpha), alpha)
    colour = leaf["colour"].reshape(n, k, 3, 1, 1)
    grey = col("grad_v") * (v * r * asp) \
        + texture * col("amplitude") * (0.5 + colour.mean(dim=2))
    fill = colour + leaf["grad_u"].reshape(n, k, 3, 1, 1) * (u * r).unsqueeze(2) \
        + grey.unsqueeze(2)
    fill = fill * (1.0 - col("shade") * (rho * rho).clamp(max=1.0)).unsqueeze(2)
    return alpha, fill


class ProceduralSource:
    """Dead-leaves scenes rendered on the CPU (see the module docstring).

    Args:
        shapes: leaves per image; each image keeps a random fraction of them, so clutter
            varies. Leaves are painted by decreasing footprint, so large ones lay out the
            scene and small ones add detail on top.
        r_min, r_max: leaf radius range as a fraction of the image side.
        exponent: radii follow ``p(r) ~ r^-exponent`` (3 is the scale-invariant dead-leaves
            law; smaller values give more large leaves per leaf drawn).
        chunk: large leaves whose masks are computed together (memory/speed only).

    Leaves whose footprint fits in a ``25 x 25`` patch are drawn in that patch only, one
    leaf at a time over the batch; this is what keeps a batch of 64-pixel scenes at tens of
    milliseconds.
    """

    def __init__(self, shapes: int = 80, r_min: float = 0.01, r_max: float = 0.7,
                 exponent: float = 2.0, chunk: int = 8) -> None:
        if shapes < 1 or not 0 < r_min < r_max or exponent <= 1 or chunk < 1:
            raise ValueError(f"need shapes >= 1, 0 < r_min < r_max, exponent > 1, chunk >= 1; "
                             f"got {shapes}, {r_min}, {r_max}, {exponent}, {chunk}")
        self.shapes = shapes
        self.r_min = r_min
        self.r_max = r_max
        self.exponent = exponent
        self.chunk = chunk

    def _radii(self, generator: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
        """Inverse-CDF sample of ``p(r) ~ r^-exponent`` on ``[r_min, r_max]``."""
        u = torch.rand(shape, generator=generator)
        k = 1.0 - self.exponent
        a, b = self.r_min ** k, self.r_max ** k
        return (a + u * (b - a)) ** (1.0 / k)

    def _leaves(self, g: torch.Generator, n: int, size: int,
                palette: torch.Tensor, textures: int) -> dict[str, torch.Tensor]:
        """Every leaf's parameters, ``(n, K)`` (colours ``(n, K, 3)``), by footprint."""
        k = self.shapes
        radius = self._radii(g, (n, k))
        # Edge width 0.3-1.5 px (in focus to slightly defocused).
        softness = torch.exp(_uniform(g, (n, k), math.log(0.3), math.log(1.5)))
        footprint = radius * size + 6.3 * softness  # pixels from the centre with alpha > 0
        order = footprint.argsort(dim=1, descending=True)
        kind = torch.rand((n, k), generator=g)
        pick = torch.randint(0, palette.shape[1], (n, k), generator=g)
        leaf = {
            "radius": radius.gather(1, order), "softness": softness.gather(1, order),
            "footprint": footprint.gather(1, order),
            "cy": _uniform(g, (n, k), -0.1, 1.1), "cx": _uniform(g, (n, k), -0.1, 1.1),
            "angle": _uniform(g, (n, k), 0.0, math.pi),
            # Round-ish leaves; a tenth are thin lines (twigs, wires, edges).
            "aspect": torch.where(kind < 0.1, _uniform(g, (n, k), 0.01, 0.06),
                                  _uniform(g, (n, k), 0.3, 1.0)),
            "is_box": ((kind < 0.1) | (kind > 0.6)).float(),
            "active": (torch.rand((n, k), generator=g)
                       < _uniform(g, (n, 1), 0.6, 1.0)).float(),
            "colour": torch.gather(palette, 1, pick.unsqueeze(-1).expand(n, k, 3))
            + 0.06 * torch.randn((n, k, 3), generator=g),
            "grad_u": _uniform(g, (n, k, 3), -0.3, 0.3),
            "grad_v": _uniform(g, (n, k), -0.3, 0.3),
            "texture": torch.randint(0, textures, (n, k), generator=g),
            "amplitude": _uniform(g, (n, k), 0.0, 0.22)
            * (torch.rand((n, k), generator=g) < 0.6),
        }
        leaf["shade"] = _uniform(g, (n, k), 0.0, 0.5) * ((kind > 0.35) & (kind <= 0.6))
        return leaf

    def sample(self, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """Render ``count`` scenes of ``size x size``: ``(count, 3, size, size)`` in [0, 1]."""
        if count < 1 or size < 4:
            raise ValueError(f"need count >= 1 and size >= 4, got {count}, {size}")
        g, n = generator, count
        axis = (torch.arange(size, dtype=torch.float32) + 0.5) / size
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        palette = _palette_colours(g, n, 6)
        textures = _texture_bank(n, 4, size, g)
        leaf = self._leaves(g, n, size, palette, textures.shape[1])

        # Background: a palette colour, gradients and a weak texture.
        image = palette[:, 0].view(n, 3, 1, 1) \
            + _uniform(g, (n, 3, 1, 1), -0.25, 0.25) * (yy - 0.5) \
            + _uniform(g, (n, 3, 1, 1), -0.15, 0.15) * (xx - 0.5) \
            + _uniform(g, (n, 1, 1, 1), 0.0, 0.12) * textures[:, :1]

        # Large leaves on the whole image, a chunk at a time, in painter's order.
        big = int((leaf["footprint"] > _PATCH_HALF - 1).sum(dim=1).max())
        for first in range(0, big, self.chunk):
            sl = slice(first, min(first + self.chunk, big))
            part = {name: value[:, sl] for name, value in leaf.items()}
            k = sl.stop - sl.start
            tex = torch.gather(textures, 1, part["texture"][..., None, None].expand(
                n, k, size, size))
            alpha, fill = _leaf_layers(yy, xx, part, tex, size)
            for j in range(k):
                image = image + alpha[:, j:j + 1] * (fill[:, j] - image)

        # Small leaves in a (2h+1)^2 patch around their centre, on a padded canvas.
        half = _PATCH_HALF
        margin = half + math.ceil(0.1 * size) + 2
        canvas = F.pad(image, (margin,) * 4)
        tex_canvas = F.pad(textures, (margin,) * 4)
        offsets = torch.arange(2 * half + 1)
        small = {name: value[:, big:] for name, value in leaf.items()}
        k = self.shapes - big
        if k > 0:
            rows = (small["cy"] * size).floor().long().unsqueeze(-1) - half + offsets  # (n,k,P)
            cols = (small["cx"] * size).floor().long().unsqueeze(-1) - half + offsets
            batch = torch.arange(n).view(n, 1, 1, 1)
            tex = tex_canvas[batch, small["texture"].view(n, k, 1, 1),
                             (rows + margin).unsqueeze(-1), (cols + margin).unsqueeze(-2)]
            alpha, fill = _leaf_layers(((rows + 0.5) / size).unsqueeze(-1),
                                       ((cols + 0.5) / size).unsqueeze(-2), small, tex, size)
            channel = torch.arange(3).view(1, 3, 1, 1)
            for j in range(k):  # painter's order: patches may overlap
                index = (batch, channel, (rows[:, j] + margin).view(n, 1, -1, 1),
                         (cols[:, j] + margin).view(n, 1, 1, -1))
                patch = canvas[index]
                canvas[index] = patch + alpha[:, j:j + 1] * (fill[:, j] - patch)
        image = canvas[..., margin:margin + size, margin:margin + size]

        # Global: smooth illumination, colour balance, defocus, sensor noise.
        light = 1.0 + _uniform(g, (n, 1, 1, 1), -0.35, 0.35) * (yy - 0.5) \
            + _uniform(g, (n, 1, 1, 1), -0.35, 0.35) * (xx - 0.5) \
            + _uniform(g, (n, 1, 1, 1), 0.0, 0.15) * fractal_noise(n, 1, size, g, slope=2.0)
        image = image * light * _uniform(g, (n, 3, 1, 1), 0.92, 1.08)
        sigma = _uniform(g, (n,), 0.3, 1.4) * (torch.rand((n,), generator=g) < 0.3)
        blurred = kornia.filters.gaussian_blur2d(
            image, (7, 7), sigma.clamp_min(1e-3).unsqueeze(1).repeat(1, 2), border_type="reflect")
        image = torch.where((sigma > 0).view(n, 1, 1, 1), blurred, image)
        image = image + _uniform(g, (n, 1, 1, 1), 0.0, 0.01) * torch.randn(image.shape, generator=g)
        return image.clamp(0.0, 1.0).contiguous()


class FolderSource:
    """Random ``size x size`` crops (with random flips) of the images in ``folder``.

    Hidden files (``._x.png`` AppleDouble companions, dot files and folders) are skipped;
    every image is checked to be readable up front (:func:`check_readable`), so a damaged
    file stops the run before any work rather than when it is first sampled. Images are
    read on first use and kept in memory; images smaller than ``size`` are upscaled
    bilinearly (short side to ``size``) before cropping.

    Raises:
        UsageError: the folder does not exist, holds no images, or a damaged one (named).
    """

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise UsageError(f"$clean_dir {folder}: no such directory")
        self.paths = sorted(p for p in folder.rglob("*")
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                            and not is_hidden(p.relative_to(folder)))
        if not self.paths:
            raise UsageError(f"$clean_dir {folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        for path in self.paths:
            check_readable(path, "$clean_dir")
        self.folder = folder
        self._cache: dict[Path, torch.Tensor] = {}

    def _image(self, path: Path, size: int) -> torch.Tensor:
        image = self._cache.get(path)
        if image is None:
            image = self._cache[path] = read_image(path)
        short = min(image.shape[-2:])
        if short < size:
            scale = size / short
            height = max(size, round(image.shape[-2] * scale))
            width = max(size, round(image.shape[-1] * scale))
            image = F.interpolate(image.unsqueeze(0), size=(height, width), mode="bilinear",
                                  align_corners=False).squeeze(0).clamp(0, 1)
        return image

    def sample(self, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` random crops ``(count, 3, size, size)``."""
        crops = []
        for _ in range(count):
            index = int(torch.randint(0, len(self.paths), (1,), generator=generator))
            image = self._image(self.paths[index], size)
            top = int(torch.randint(0, image.shape[-2] - size + 1, (1,), generator=generator))
            left = int(torch.randint(0, image.shape[-1] - size + 1, (1,), generator=generator))
            crop = image[:, top:top + size, left:left + size]
            if bool(torch.rand((1,), generator=generator) < 0.5):
                crop = crop.flip(-1)
            crops.append(crop)
        return torch.stack(crops).contiguous()


SCENES: tuple[str, ...] = ("leaves", "rooms")
"""The procedural clean scenes: ``leaves`` (:class:`ProceduralSource`, dead leaves) and
``rooms`` (:class:`~dreamprune_cli.data.rooms.RoomSource`, indoor rooms with their depth)."""


@runtime_checkable
class DepthSource(Protocol):
    """A clean source that also knows each image's scene depth (hazed along it)."""

    def sample_with_depth(self, count: int, size: int, generator: torch.Generator
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images (count, 3, size, size) in [0, 1], depth (count, 1, size, size) in
        (0, 1])``."""


def make_clean_source(clean_dir: str | Path | None = None, scenes: str = "leaves"
                      ) -> CleanSource:
    """A :class:`FolderSource` for ``clean_dir``, else the procedural ``scenes``.

    Raises:
        UsageError: ``scenes`` not one of :data:`SCENES`; see :class:`FolderSource`.
    """
    if scenes not in SCENES:
        raise UsageError(f"$scenes {scenes!r}: expected one of {', '.join(SCENES)}")
    if clean_dir is not None:
        return FolderSource(clean_dir)
    if scenes == "rooms":
        return RoomSource()
    return ProceduralSource()


def procedural_images(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """``count`` dead-leaves scenes ``(count, 3, size, size)`` in [0, 1], fixed by ``seed``.

    Example:
        >>> procedural_images(2, 32, seed=1).shape
        torch.Size([2, 3, 32, 32])
    """
    return ProceduralSource().sample(count, size, torch.Generator().manual_seed(seed))
