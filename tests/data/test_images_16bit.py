"""Issue 32 item 4: 16-bit images are read at 16 bits (value / 65535), not as 8-bit.

The files are written here by two small writers (PNG with zlib, uncompressed TIFF), checked
against what Pillow itself decodes (the 16-bit grey it reads whole, the high bytes of the
colour it reduces to 8 bits).
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamprune_cli.cli import app
from dreamprune_cli.data.images import read_image

_PNG_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # bands -> grey, grey+alpha, RGB, RGBA


def write_png16(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit PNG of uint16 ``(H, W)`` or ``(H, W, C)``, C in 1-4; rows use the filters
    None and Sub alternately (a decoder must undo them with 2 bytes a sample)."""
    pixels = pixels.reshape(*pixels.shape[:2], -1)
    height, width, bands = pixels.shape
    stride = 2 * bands
    rows = []
    for y in range(height):
        raw = np.frombuffer(pixels[y].astype(">u2").tobytes(), dtype=np.uint8).astype(int)
        if y % 2:  # Sub: each byte minus the byte one pixel to the left
            left = np.concatenate([np.zeros(stride, dtype=int), raw[:-stride]])
            rows.append(b"\x01" + ((raw - left) % 256).astype(np.uint8).tobytes())
        else:
            rows.append(b"\x00" + raw.astype(np.uint8).tobytes())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 16, _PNG_COLOUR_TYPE[bands], 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b""))
    return path


def write_tiff16(path: Path, pixels: np.ndarray, order: str = "<") -> Path:
    """An uncompressed 16-bit TIFF (one strip) of uint16 ``(H, W)`` or ``(H, W, 3)``;
    ``order`` ``<`` (II, little-endian) or ``>`` (MM)."""
    pixels = pixels.reshape(*pixels.shape[:2], -1)
    height, width, bands = pixels.shape
    data = pixels.astype(f"{order}u2").tobytes()
    ifd_at = 8 + len(data)
    extra_at = ifd_at + 2 + 12 * 10 + 4
    short, long_ = 3, 4

    def entry(tag: int, kind: int, count: int, value: int) -> bytes:
        packed = struct.pack(f"{order}H", value) + b"\0\0" if kind == short and count == 1 \
            else struct.pack(f"{order}I", value)
        return struct.pack(f"{order}HHI", tag, kind, count) + packed

    entries = [entry(256, long_, 1, width), entry(257, long_, 1, height),
               entry(258, short, bands, 16 if bands == 1 else extra_at),
               entry(259, short, 1, 1), entry(262, short, 1, 2 if bands == 3 else 1),
               entry(273, long_, 1, 8), entry(277, short, 1, bands),
               entry(278, long_, 1, height), entry(279, long_, 1, len(data)),
               entry(284, short, 1, 1)]
    magic = b"II*\0" if order == "<" else b"MM\0*"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(magic + struct.pack(f"{order}I", ifd_at) + data
                     + struct.pack(f"{order}H", len(entries)) + b"".join(entries)
                     + struct.pack(f"{order}I", 0) + struct.pack(f"{order}3H", 16, 16, 16))
    return path


def _values(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)


def _as_read(pixels: np.ndarray) -> np.ndarray:
    """What read_image must return: ``(3, H, W)`` float32 of value / 65535."""
    grey = pixels.ndim == 2
    rgb = np.repeat(pixels[..., None], 3, axis=2) if grey else pixels[..., :3]
    return (rgb.astype(np.float64) / 65535.0).astype(np.float32).transpose(2, 0, 1)


@pytest.mark.parametrize("kind", ["png-rgb", "png-rgba", "png-grey", "png-grey-alpha",
                                  "tiff-rgb-le", "tiff-rgb-be", "tiff-grey"])
def test_16bit_images_read_at_16_bits(tmp_path: Path, kind: str) -> None:
    shape = {"png-rgb": (6, 7, 3), "png-rgba": (6, 7, 4), "png-grey": (6, 7),
             "png-grey-alpha": (6, 7, 2), "tiff-rgb-le": (6, 7, 3), "tiff-rgb-be": (6, 7, 3),
             "tiff-grey": (6, 7)}[kind]
    pixels = _values(1, shape)
    if kind.startswith("png"):
        path = write_png16(tmp_path / "x.png", pixels)
    else:
        path = write_tiff16(tmp_path / "x.tif", pixels, ">" if kind.endswith("be") else "<")
    with Image.open(path) as image:  # the writer, checked against Pillow's own decoding
        decoded = np.asarray(image)
    if kind in ("png-grey", "tiff-grey"):
        assert np.array_equal(decoded, pixels)
    elif kind == "png-grey-alpha":
        assert np.array_equal(decoded[..., 0], pixels[..., 0] >> 8)
    else:
        assert np.array_equal(decoded, (pixels >> 8).astype(np.uint8))  # Pillow: 8 bits
    expected = _as_read(pixels[..., 0] if kind == "png-grey-alpha" else pixels)
    assert np.array_equal(read_image(path).numpy(), expected)


def test_evaluate_scores_16bit_targets_at_16_bits(tmp_path: Path, runner) -> None:
    target = _values(2, (40, 48, 3))
    noise = np.random.default_rng(3).integers(-700, 700, target.shape)
    degraded = np.clip(target.astype(int) + noise, 0, 65535).astype(np.uint16)
    write_png16(tmp_path / "input" / "a.png", degraded)
    write_tiff16(tmp_path / "target" / "a.tif", target)
    result = runner.invoke(app, ["evaluate", "--model", "identity", "--input-dir",
                                 str(tmp_path / "input"), "--target-dir",
                                 str(tmp_path / "target"), "--metric-space", "rgb",
                                 "--crop-border", "0", "--quantize", "round", "--json",
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)["psnr"]

    def psnr(output: np.ndarray, reference: np.ndarray) -> float:
        mse = np.mean((output.astype(np.float64) * 255 - reference.astype(np.float64) * 255) ** 2)
        return float(10 * np.log10(255.0 ** 2 / mse))

    restored = np.round(_as_read(degraded) * np.float32(255)).astype(np.float32) / np.float32(255)
    by_hand = psnr(restored, _as_read(target))
    assert scored == pytest.approx(by_hand, abs=1e-9)
    reduced = (target >> 8).astype(np.float64).transpose(2, 0, 1) / 255  # the 8-bit reading
    assert abs(psnr(restored, reduced) - by_hand) > 0.05
