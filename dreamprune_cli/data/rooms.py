"""Procedural indoor scenes with their depth: clean images for dehazers trained on rooms.

Indoor haze sets (RESIDE's ITS/SOTS) are rendered from rooms: a floor, walls and a ceiling
receding to a vanishing point, furniture standing on the floor, pictures and windows, under
indoor light, hazed with the scattering model over the room's *metric* depth. A dehazer
trained on such images reads haze from where the depth goes, which dead-leaves scenes with an
unrelated smooth depth (:func:`~dreamprune_cli.data.degrade.random_depth`) do not show it.
:class:`RoomSource` renders such rooms with a pinhole camera looking down the room's axis:

* the **box room**: the back wall is an axis-aligned rectangle around the vanishing point
  ``v``; a pixel ``p`` outside it lies on the floor, the ceiling or a side wall, whichever of
  the four ratios ``s = |p - v| / |b - v|`` (per side, ``b`` the back wall's edge) is
  largest, and its depth is ``z_back / s`` (image distance from ``v`` falls as ``1/z``
  along a plane that recedes to ``v``). Inside the back wall the depth is ``z_back``;
* **surfaces** are textured in world coordinates, so planks, tiles and fractal noise
  foreshorten as in a photograph: planks or tiles on the floor, plain or patterned walls,
  a lighter ceiling;
* **furniture**: boxes standing on the floor (a front face at depth ``z`` whose base lies on
  the floor line ``y = v_y + h_cam / z``, and a top face when it is below eye level), drawn
  far to near so nearer ones occlude;
* **pictures and windows** on the back wall (windows bright, as daylight through glass);
* **light**: a point light under the ceiling (inverse-square falloff) plus ambient light, a
  per-image colour cast, a slight vignette; rendered at twice the size and averaged down
  (anti-aliasing).

Depth is returned normalised to ``(0, 1]`` (divided by ``z_back``, the farthest point), the
scale :func:`~dreamprune_cli.data.degrade.haze` expects. Everything is a pure function of the
``torch.Generator``'s state; the images are float32 CPU tensors in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from dreamprune_cli.data.noise import fractal_noise

__all__ = ["RoomSource", "room_images"]

# World units are metres; the focal length is 1 in the image's normalised coordinates
# ([-1, 1] across), a 90-degree field of view.
_WALLS = torch.tensor([[0.86, 0.82, 0.74], [0.78, 0.80, 0.80], [0.70, 0.74, 0.68],
                       [0.82, 0.74, 0.66], [0.62, 0.66, 0.72], [0.90, 0.88, 0.84]])
_FLOORS = torch.tensor([[0.55, 0.38, 0.24], [0.42, 0.30, 0.20], [0.60, 0.58, 0.54],
                        [0.35, 0.35, 0.38], [0.66, 0.52, 0.36], [0.48, 0.40, 0.36]])
_FURNITURE = torch.tensor([[0.45, 0.30, 0.18], [0.25, 0.22, 0.20], [0.70, 0.68, 0.62],
                           [0.30, 0.36, 0.50], [0.55, 0.20, 0.18], [0.40, 0.46, 0.32],
                           [0.82, 0.78, 0.70], [0.15, 0.15, 0.16]])


def _u(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g))


def _pick(g: torch.Generator, palette: torch.Tensor, jitter: float = 0.06) -> torch.Tensor:
    index = int(torch.randint(0, palette.shape[0], (), generator=g))
    colour = palette[index] + (torch.rand(3, generator=g) - 0.5) * 2 * jitter
    return colour.clamp(0.02, 0.98)


def _sample(texture: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``texture`` ``(1, 1, T, T)`` read at ``u, v`` (texture units), mirrored at every
    integer so the tiling has no seams, bilinearly: ``(H, W)``."""
    def mirror(c: torch.Tensor) -> torch.Tensor:
        return 1 - 2 * (torch.remainder(c, 2.0) - 1).abs()  # -1 .. 1 .. -1, continuous

    grid = torch.stack([mirror(u), mirror(v)], -1)
    return F.grid_sample(texture, grid.unsqueeze(0), mode="bilinear", padding_mode="reflection",
                         align_corners=False)[0, 0]


class RoomSource:
    """Procedural indoor rooms (see the module docstring) and their depth maps.

    Args:
        furniture: the most boxes per room (each room draws 1 to ``furniture``; 0: none).
        pictures: the most pictures or windows on the back wall (0 to ``pictures``).
    """

    def __init__(self, furniture: int = 6, pictures: int = 3) -> None:
        if furniture < 0 or pictures < 0:
            raise ValueError(f"RoomSource: furniture and pictures must be >= 0, got "
                             f"{furniture}, {pictures}")
        self.furniture, self.pictures = furniture, pictures

    def sample(self, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``count`` rooms ``(count, 3, size, size)``, float32 in [0, 1]."""
        return self.sample_with_depth(count, size, generator)[0]

    def sample_with_depth(self, count: int, size: int, generator: torch.Generator
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, depth)``: ``(count, 3, size, size)`` in [0, 1] and ``(count, 1, size,
        size)`` in ``(0, 1]`` (metric depth over the back wall's, 1 the farthest)."""
        pairs = [self._room(size, generator) for _ in range(count)]
        return (torch.stack([p[0] for p in pairs]).contiguous(),
                torch.stack([p[1] for p in pairs]).contiguous())

    def _room(self, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        render = 2 * size
        axis = (torch.arange(render, dtype=torch.float32) + 0.5) / render * 2 - 1
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        vx, vy = _u(g, -0.35, 0.35), _u(g, -0.3, 0.25)
        left, right = vx - _u(g, 0.15, 0.6), vx + _u(g, 0.15, 0.6)
        top, bottom = vy - _u(g, 0.12, 0.45), vy + _u(g, 0.12, 0.45)
        z_back = _u(g, 3.0, 9.0)
        # ratios to the back wall's edges; the largest names the surface
        ratios = torch.stack([(vx - xx).clamp_min(0) / (vx - left),
                              (xx - vx).clamp_min(0) / (right - vx),
                              (vy - yy).clamp_min(0) / (vy - top),
                              (yy - vy).clamp_min(0) / (bottom - vy)])
        s, side = ratios.max(dim=0)
        back = s <= 1.0
        z = torch.where(back, torch.full_like(s, z_back), z_back / s.clamp_min(1.0))
        # world coordinates (focal length 1): X across, Y down from the eye, Z along the axis
        wx, wy = (xx - vx) * z, (yy - vy) * z
        wall, floor = _pick(g, _WALLS), _pick(g, _FLOORS)
        ceiling = (wall * 0.3 + 0.7 * _u(g, 0.85, 0.97)).clamp(0, 1)
        side_wall = wall if _u(g, 0, 1) < 0.6 else _pick(g, _WALLS)
        image = torch.empty(3, render, render)
        surfaces = {0: (side_wall, wy, z), 1: (side_wall, wy, z), 2: (ceiling, wx, z),
                    3: (floor, wx, z)}
        noise = fractal_noise(4, 1, 64, g, slope=_u(g, 1.6, 2.4))
        for index, (colour, u, v) in surfaces.items():
            tone = 1 + 0.06 * _sample(noise[index:index + 1], u / 2.0, v / 2.0)
            if index == 3:  # planks or tiles
                period = _u(g, 0.12, 0.3)
                tone = tone * self._pattern(g, u, v, period, tiles=_u(g, 0, 1) < 0.4)
            mask = (~back) & (side == index)
            image[:, mask] = (colour.view(3, 1) * tone[mask].view(1, -1))
        tone = 1 + 0.05 * _sample(noise[0:1], wx / 3.0, wy / 3.0)
        if _u(g, 0, 1) < 0.3:  # wallpaper stripes
            tone = tone * (1 + 0.05 * torch.sign(torch.sin(wx * math.tau / _u(g, 0.1, 0.4))))
        image[:, back] = wall.view(3, 1) * tone[back].view(1, -1)
        eye = (bottom - vy) * z_back  # camera height above the floor, metres
        self._decorate(g, image, z, xx, yy, vx, vy, left, right, top, bottom, z_back)
        self._furnish(g, image, z, xx, yy, vx, vy, eye, z_back, left, right, noise)
        light = self._light(g, xx, yy, z, vx, vy, top, z_back)
        image = image * light
        image = F.avg_pool2d(image.unsqueeze(0), 2)[0]
        depth = F.avg_pool2d((z / z_back).view(1, 1, render, render), 2)[0]
        image = image + _u(g, 0.0, 0.01) * torch.randn(image.shape, generator=g)
        return image.clamp(0.0, 1.0), depth.clamp(1e-3, 1.0)

    @staticmethod
    def _pattern(g: torch.Generator, u: torch.Tensor, v: torch.Tensor, period: float,
                 tiles: bool) -> torch.Tensor:
        """Multiplicative plank (stripes along ``v``) or tile (grid) pattern, about 1."""
        seam = lambda c: (torch.remainder(c / period, 1.0) < 0.06).float()  # noqa: E731
        if tiles:
            return 1 - 0.25 * torch.maximum(seam(u), seam(v * 0.5))
        board = torch.floor(u / period)
        shade = 1 + 0.08 * torch.sin(board * 12.9898 + _u(g, 0, 6.28))
        return shade * (1 - 0.3 * seam(u))

    def _decorate(self, g: torch.Generator, image: torch.Tensor, z: torch.Tensor,
                  xx: torch.Tensor, yy: torch.Tensor, vx: float, vy: float, left: float,
                  right: float, top: float, bottom: float, z_back: float) -> None:
        """Pictures (textured, framed) and windows (bright) on the back wall."""
        count = int(torch.randint(0, self.pictures + 1, (), generator=g))
        for _ in range(count):
            width, height = _u(g, 0.15, 0.6) * (right - left), _u(g, 0.15, 0.5) * (bottom - top)
            x0 = _u(g, left, right - width)
            y0 = _u(g, top, top + 0.6 * (bottom - top) - height) if height < 0.6 * (
                bottom - top) else top
            inside = (xx >= x0) & (xx <= x0 + width) & (yy >= y0) & (yy <= y0 + height) \
                & (z >= z_back - 1e-4)
            if not inside.any():
                continue
            if _u(g, 0, 1) < 0.35:  # a window: daylight, mullions
                glow = _u(g, 0.88, 1.0)
                bars = ((torch.remainder((xx - x0) / (width / 2), 1.0) < 0.04)
                        | (torch.remainder((yy - y0) / (height / 2), 1.0) < 0.04)).float()
                value = glow * (1 - 0.7 * bars)
                image[:, inside] = value[inside].view(1, -1).expand(3, -1) * torch.tensor(
                    [1.0, 1.0, _u(g, 0.95, 1.05)]).view(3, 1)
            else:
                art = fractal_noise(3, 1, 32, g, slope=_u(g, 1.2, 2.0))
                u, v = (xx - x0) / width, (yy - y0) / height
                layers = torch.stack([_sample(art[c:c + 1], u * 0.99, v * 0.99)
                                      for c in range(3)])
                base = torch.rand(3, 1, 1, generator=g)
                picture = (base + 0.15 * layers).clamp(0, 1)
                frame = (u < 0.05) | (u > 0.95) | (v < 0.05) | (v > 0.95)
                picture[:, frame] = _u(g, 0.1, 0.8)
                image[:, inside] = picture[:, inside]

    def _furnish(self, g: torch.Generator, image: torch.Tensor, z: torch.Tensor,
                 xx: torch.Tensor, yy: torch.Tensor, vx: float, vy: float, eye: float,
                 z_back: float, left: float, right: float, noise: torch.Tensor) -> None:
        """Boxes on the floor, far to near (painter's algorithm); ``z`` updated in place."""
        if self.furniture == 0:
            return
        count = 1 + int(torch.randint(0, self.furniture, (), generator=g))
        x_min, x_max = (left - vx) * z_back, (right - vx) * z_back
        boxes = []
        for _ in range(count):
            depth = _u(g, 1.2, 0.92 * z_back)
            width, height = _u(g, 0.3, 2.0), _u(g, 0.3, min(2.2, 1.6 * eye))
            extent = _u(g, 0.3, 1.2)
            centre = _u(g, x_min + width / 2, max(x_min + width / 2, x_max - width / 2))
            boxes.append((depth, width, height, extent, centre))
        for depth, width, height, extent, centre in sorted(boxes, reverse=True):
            colour = _pick(g, _FURNITURE, 0.08)
            x0, x1 = vx + (centre - width / 2) / depth, vx + (centre + width / 2) / depth
            base, rise = vy + eye / depth, vy + (eye - height) / depth
            front = (xx >= x0) & (xx <= x1) & (yy >= rise) & (yy <= base)
            top_face = torch.zeros_like(front)
            if height < eye:  # the top is seen from above: z from depth to depth + extent
                zt = (eye - height) / (yy - vy).clamp_min(1e-6)
                top_face = (yy > vy) & (yy < rise) & (zt >= depth) & (zt <= depth + extent) \
                    & ((xx - vx) * zt >= centre - width / 2) \
                    & ((xx - vx) * zt <= centre + width / 2) & (zt < z)
            else:
                zt = z
            tone = 1 + 0.08 * _sample(noise[1:2], (xx - vx) * depth, (yy - vy) * depth)
            if top_face.any():
                image[:, top_face] = (colour * _u(g, 1.05, 1.2)).clamp(0, 1).view(3, 1) * \
                    tone[top_face].view(1, -1)
                z[top_face] = zt[top_face]
            if front.any():
                image[:, front] = colour.view(3, 1) * tone[front].view(1, -1)
                z[front] = depth

    @staticmethod
    def _light(g: torch.Generator, xx: torch.Tensor, yy: torch.Tensor, z: torch.Tensor,
               vx: float, vy: float, top: float, z_back: float) -> torch.Tensor:
        """Per-pixel RGB light ``(3, H, W)``: ambient + a point light near the ceiling
        (inverse-square in world distance, no occlusion), a colour cast, a vignette."""
        px, pz = _u(g, -1.0, 1.0), _u(g, 0.3, 0.9) * z_back
        py = (top - vy) * z_back * _u(g, 0.8, 0.95)  # just below the ceiling
        wx, wy = (xx - vx) * z, (yy - vy) * z
        distance2 = (wx - px) ** 2 + (wy - py) ** 2 + (z - pz) ** 2
        power, ambient = _u(g, 1.0, 4.0), _u(g, 0.35, 0.7)
        light = ambient + (1 - ambient) * power / (power + distance2)
        vignette = 1 - _u(g, 0.0, 0.25) * (xx ** 2 + yy ** 2) / 2
        cast = 1 + (torch.rand(3, generator=g) - 0.5) * 0.12
        return (light * vignette).unsqueeze(0) * cast.view(3, 1, 1) * _u(g, 0.9, 1.15)


def room_images(count: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` rooms and their depth, fixed by ``seed`` (see :class:`RoomSource`).

    Example:
        >>> images, depth = room_images(2, 32, seed=1)
        >>> images.shape, depth.shape
        (torch.Size([2, 3, 32, 32]), torch.Size([2, 1, 32, 32]))
    """
    return RoomSource().sample_with_depth(count, size, torch.Generator().manual_seed(seed))
