"""Image reading and writing.

Conversion rule (any Pillow mode -> float RGB in [0, 1], shape ``(3, H, W)``):

* EXIF orientation is applied first, so the pixels are as a viewer shows them.
* 8-bit modes are divided by 255. 16-bit and 32-bit integer greyscale (``I;16*``, ``I``)
  are divided by 65535 (precision kept, values clipped to [0, 1]); float greyscale (``F``)
  is clipped to [0, 1].
* 16-bit colour (PNG RGB/RGBA and grey+alpha, TIFF RGB/RGBA/RGBX) is divided by 65535 too:
  Pillow has no 16-bit colour mode and decodes such files to 8 bits (the high byte of each
  sample). :func:`_read_16bit_colour` decodes them twice with Pillow's own decoder, once as
  Pillow does and once with the raw mode of the other byte order (``RGB;16B`` <->
  ``RGB;16L``), which yields the low bytes; ``high * 256 + low`` is the stored value.
* Greyscale (``1``, ``L``, ``I*``, ``F``) is repeated over the three channels.
* Alpha is dropped, colour kept as stored (what OpenCV's ``imread`` does): ``RGBA`` -> RGB,
  ``LA`` -> L, palette images are expanded through their palette.
* Other colour spaces (``CMYK``, ``YCbCr``, ``LAB``, ``HSV``) use Pillow's conversion to RGB.

Outputs are written as 8-bit RGB PNG (values clamped to [0, 1], rounded), atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


# Pillow's raw modes of 16-bit colour, and the one that reads the other byte of each sample.
_LOW_BYTE_RAWMODE = {f"{bands};16{order}": f"{bands};16{other}"
                     for bands in ("RGB", "RGBA", "RGBX")
                     for order, other in (("B", "L"), ("L", "B"))}
_GREY_ALPHA_16 = "LA;16B"  # PNG grey + alpha (Pillow's mode RGBA): its 4 bytes a pixel
# unpacked as 8-bit RGBA are grey high, grey low, alpha high, alpha low


def _tile_rawmode(tile: Any) -> str | None:
    """The raw mode a decoder tile unpacks with (``args`` or its first element)."""
    args = tile[3]
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return args if isinstance(args, str) else None


def _with_rawmode(tile: Any, rawmode: str) -> Any:
    args = tile[3]
    args = (rawmode, *args[1:]) if isinstance(args, tuple) else rawmode
    return tile._replace(args=args) if hasattr(tile, "_replace") else (*tile[:3], args)


def _decoded(path: Path, rawmode: str | None = None) -> Image.Image:
    """``path`` decoded (tiles unpacked with ``rawmode`` if given), EXIF orientation applied."""
    with Image.open(path) as image:
        if rawmode is not None:
            image.tile = [_with_rawmode(tile, rawmode) for tile in image.tile]
        image.load()
        return ImageOps.exif_transpose(image)


def _read_16bit_colour(path: Path, image: Image.Image) -> np.ndarray | None:
    """Float64 ``(H, W, 3)`` in [0, 1] (value / 65535) of a 16-bit colour ``image`` opened
    from ``path`` (not yet loaded); ``None`` for any other image."""
    rawmodes = {_tile_rawmode(tile) for tile in image.tile}
    if len(rawmodes) != 1:
        return None
    rawmode = rawmodes.pop()
    if rawmode == _GREY_ALPHA_16:
        both = np.asarray(_decoded(path, "RGBA"), dtype=np.uint16)
        grey = (both[..., 0] << 8 | both[..., 1]).astype(np.float64) / 65535.0
        return np.repeat(grey[..., None], 3, axis=2)
    if rawmode not in _LOW_BYTE_RAWMODE:
        return None
    high = np.asarray(_decoded(path), dtype=np.uint16)[..., :3]
    low = np.asarray(_decoded(path, _LOW_BYTE_RAWMODE[rawmode]), dtype=np.uint16)[..., :3]
    return (high << 8 | low).astype(np.float64) / 65535.0


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
            array = _read_16bit_colour(path, image)
            if array is None:
                image.load()
                array = _to_array(ImageOps.exif_transpose(image))
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
