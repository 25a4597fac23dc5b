"""Regenerate the tiny sample pair set shipped in dreamprune_cli/assets/sample/.

Three 48x64 clean scenes (gradients and soft discs) and rainy versions (bright streaks along
one angle). Deterministic: ``python tools/make_sample.py`` rewrites the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "dreamprune_cli" / "assets" / "sample"


def scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base = rng.uniform(0.2, 0.8, 3)[None, None] + 0.3 * (xx[..., None] * rng.uniform(-1, 1, 3)
                                                         + yy[..., None] * rng.uniform(-1, 1, 3))
    for _ in range(6):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1.3), rng.uniform(0.05, 0.25)
        mask = np.clip((r - np.hypot(yy - cy, xx - cx)) * 40, 0, 1)[..., None]
        base = base * (1 - mask) + rng.uniform(0, 1, 3)[None, None] * mask
    return np.clip(base, 0, 1)


def rain(rng: np.random.Generator, clean: np.ndarray) -> np.ndarray:
    height, width, _ = clean.shape
    streaks = np.zeros((height, width))
    angle = rng.uniform(-0.4, 0.4)
    for _ in range(60):
        y, x, length = rng.integers(0, height), rng.integers(0, width), rng.integers(4, 12)
        for t in range(length):
            yy, xx = y + t, int(round(x + t * np.tan(angle)))
            if 0 <= yy < height and 0 <= xx < width:
                streaks[yy, xx] = 0.6
    return np.clip(clean + streaks[..., None], 0, 1)


def main() -> None:
    rng = np.random.default_rng(7)
    for sub in ("input", "target"):
        (OUT / sub).mkdir(parents=True, exist_ok=True)
    for index in range(3):
        clean = scene(rng, 48, 64)
        rainy = rain(rng, clean)
        for sub, image in (("target", clean), ("input", rainy)):
            pixels = (image * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(OUT / sub / f"sample_{index}.png", optimize=True)


if __name__ == "__main__":
    main()
