"""Reading every Pillow mode into RGB [0, 1], EXIF orientation, errors, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dreamprune_cli.data.images import image_size, read_image, write_png
from dreamprune_cli.errors import UsageError


def test_rgb_png_roundtrip(tmp_path: Path) -> None:
    pixels = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 4
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    assert image.shape == (3, 4, 5) and image.dtype == torch.float32
    assert torch.allclose(image, torch.from_numpy(pixels.transpose(2, 0, 1)).float() / 255)


@pytest.mark.parametrize("suffix", [".jpg", ".bmp", ".tiff", ".webp"])
def test_other_formats(tmp_path: Path, suffix: str) -> None:
    Image.new("RGB", (7, 3), (255, 0, 0)).save(tmp_path / f"a{suffix}")
    image = read_image(tmp_path / f"a{suffix}")
    assert image.shape == (3, 3, 7)
    assert image[0].mean() > 0.9 and image[1:].mean() < 0.1


def test_greyscale_and_alpha_modes(tmp_path: Path) -> None:
    Image.new("L", (3, 2), 51).save(tmp_path / "l.png")
    assert torch.allclose(read_image(tmp_path / "l.png"), torch.full((3, 2, 3), 0.2))
    Image.new("LA", (3, 2), (102, 0)).save(tmp_path / "la.png")
    assert torch.allclose(read_image(tmp_path / "la.png"), torch.full((3, 2, 3), 0.4))
    Image.new("RGBA", (3, 2), (255, 0, 51, 0)).save(tmp_path / "rgba.png")  # alpha dropped
    assert read_image(tmp_path / "rgba.png")[:, 0, 0].tolist() == pytest.approx([1, 0, 0.2])
    palette = Image.new("P", (3, 2))
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((1, 1), 1)
    palette.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image[:, 1, 1].tolist() == [0, 1, 0] and image[:, 0, 0].tolist() == [0, 0, 0]
    Image.new("CMYK", (3, 2), (0, 255, 255, 0)).save(tmp_path / "cmyk.tiff")
    assert read_image(tmp_path / "cmyk.tiff")[:, 0, 0].tolist() == pytest.approx([1, 0, 0])


def test_16bit_keeps_precision(tmp_path: Path) -> None:
    values = np.array([[0, 1, 65535], [32768, 1000, 12345]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png")
    expected = torch.from_numpy(values.astype(np.float64) / 65535).float()
    assert torch.allclose(image[0], expected, atol=1e-7)
    assert torch.equal(image[0], image[2])
    assert image[0, 0, 1] > 0  # a value below one 8-bit level survives


def test_exif_orientation_applied(tmp_path: Path) -> None:
    pixels = np.zeros((2, 4, 3), dtype=np.uint8)
    pixels[0, 0] = 255  # top-left marker in a 2x4 (HxW) image
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    image.save(tmp_path / "rot.jpg", exif=exif.tobytes(), quality=100)
    loaded = read_image(tmp_path / "rot.jpg")
    assert loaded.shape == (3, 4, 2)
    assert image_size(tmp_path / "rot.jpg") == (4, 2)
    assert loaded[:, 0, 1].mean() > 0.5  # marker moved to the top-right


@pytest.mark.parametrize("content, match", [
    (b"", "empty file"),
    (b"this is text, not an image", "not an image"),
])
def test_bad_files(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(UsageError, match=match) as info:
        read_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_png(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(good)
    data = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such image"):
        read_image(tmp_path / "nope.png")


def test_write_png_atomic_and_no_clobber(tmp_path: Path) -> None:
    image = torch.rand(3, 5, 6)
    path = write_png(tmp_path / "out" / "x.png", image)
    assert torch.allclose(read_image(path), image, atol=0.5 / 255 + 1e-6)
    assert path.stat().st_mode & 0o044  # readable by others, like any file the user writes
    before = path.read_bytes()
    with pytest.raises(UsageError, match="already exists"):
        write_png(path, torch.zeros(3, 5, 6))
    assert path.read_bytes() == before
    write_png(path, torch.zeros(3, 5, 6), overwrite=True)
    assert read_image(path).max() == 0
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.png"]  # no temp files left
