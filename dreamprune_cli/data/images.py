"""Image reading and writing.

Conversion rule (any Pillow mode -> float RGB in [0, 1], shape ``(3, H, W)``):

* EXIF orientation is applied first, so the pixels are as a viewer shows them.
* 8-bit modes are divided by 255. 16-bit and 32-bit integer greyscale (``I;16*``, ``I``)
  are divided by 65535 (precision kept, values clipped to [0, 1]); float greyscale (``F``)
  is clipped to [0, 1].
* Greyscale (``1``, ``L``, ``I*``, ``F``) is repeated over the three channels.
* Alpha is dropped, colour kept as stored (what OpenCV's ``imread`` does): ``RGBA`` -> RGB,
  ``LA`` -> L, palette images are expanded through their palette.
* Other colour spaces (``CMYK``, ``YCbCr``, ``LAB``, ``HSV``) use Pillow's conversion to RGB.

Outputs are written as 8-bit RGB PNG (values clamped to [0, 1], rounded), atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from dreamprune_cli.errors import UsageError
from dreamprune_cli.fileio import atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}


def _to_array(image: Image.Image) -> np.ndarray:
    """Pixels of ``image`` as float64 ``(H, W, 3)`` in [0, 1] per the module's rule."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        grey = np.asarray(image, dtype=np.float64) / 65535.0
        return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)
    if mode == "F":
        grey = np.asarray(image, dtype=np.float64)
        return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)
    if mode in ("1", "L", "LA", "La"):
        grey = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in ("P", "PA"):
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "RGBa", "RGBX"):
        return np.asarray(image, dtype=np.float64)[..., :3] / 255.0
    if mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.float64) / 255.0


def read_image(path: str | Path) -> torch.Tensor:
    """Read ``path`` into a float32 tensor ``(3, H, W)`` in [0, 1].

    Raises:
        UsageError: the file is missing, empty, truncated or not an image.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such image file")
    if path.stat().st_size == 0:
        raise UsageError(f"{path}: empty file, expected an image")
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            array = _to_array(image)
    except UnidentifiedImageError:
        raise UsageError(f"{path}: not an image Pillow can read "
                         f"(expected one of {', '.join(IMAGE_SUFFIXES)})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable or truncated image ({exc})") from None
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float()


def image_size(path: str | Path) -> tuple[int, int]:
    """``(height, width)`` of ``path`` after EXIF orientation, read from the header only."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except UnidentifiedImageError:
        raise UsageError(f"{path}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable image ({exc})") from None
    return (width, height) if orientation in _SWAPS_AXES else (height, width)


def is_hidden(path: str | Path) -> bool:
    """Whether a file is hidden and never an image to use: dot files, macOS AppleDouble
    ``._name`` companions and anything under a dot folder or ``__MACOSX`` (as torchvision's
    and BasicSR's folder loaders skip them)."""
    return any(part.startswith(".") and part not in (".", "..") or part == "__MACOSX"
               for part in Path(path).parts)


def check_readable(path: str | Path, role: str) -> tuple[int, int]:
    """Open ``path`` and verify its data without decoding it (Pillow's ``verify``: the
    header, and for PNG every chunk's checksum), so that a damaged file is found before any
    work; returns ``(height, width)`` as :func:`image_size`.

    Raises:
        UsageError: naming ``role`` (the flag) and the file.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        raise UsageError(f"{role}: {path}: missing or empty file, expected an image")
    try:
        with Image.open(path) as image:
            image.verify()
    except UnidentifiedImageError:
        raise UsageError(f"{role}: {path}: not an image Pillow can read") from None
    except Exception as exc:  # Pillow raises many types for damaged data
        raise UsageError(f"{role}: {path}: damaged or truncated image ({exc})") from None
    return image_size(path)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``(3, H, W)`` float in [0, 1] -> ``(H, W, 3)`` uint8 (clamped, rounded)."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image of shape (3, H, W), got {tuple(image.shape)}")
    array = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()
    return array.transpose(1, 2, 0)


def write_png(path: str | Path, image: torch.Tensor, overwrite: bool = False) -> Path:
    """Write ``image`` ``(3, H, W)`` in [0, 1] as an 8-bit RGB PNG, atomically."""
    pixels = Image.fromarray(to_uint8(image))
    return atomic_write(path, lambda tmp: pixels.save(tmp, format="PNG"), overwrite)
