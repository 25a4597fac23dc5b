"""bench/photos.py: scikit-image's photos copied out of a wheel, nothing overwritten."""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "photos.py"


@pytest.fixture(scope="module")
def photos():
    spec = importlib.util.spec_from_file_location("photos", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _wheel(path: Path, names: tuple[str, ...]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(f"skimage/data/{name}", name.encode())
        archive.writestr("skimage/data/camera.png", b"grey, not copied")
    return path


def test_copies_the_six_photos_from_a_wheel(photos, tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "skimage.whl", photos.PHOTOS)
    written = photos.extract(tmp_path / "out", wheel)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(photos.PHOTOS)
    assert [p.read_bytes() for p in written] == [n.encode() for n in photos.PHOTOS]
    photos.extract(tmp_path / "out", wheel)  # the same files again: nothing to refuse


def test_refuses_to_overwrite_and_names_a_missing_photo(photos, tmp_path: Path) -> None:
    wheel = _wheel(tmp_path / "skimage.whl", photos.PHOTOS)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "coffee.png").write_bytes(b"mine")
    with pytest.raises(SystemExit, match="coffee.png: exists"):
        photos.extract(tmp_path / "out", wheel)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["coffee.png"]  # nothing written
    assert (tmp_path / "out" / "coffee.png").read_bytes() == b"mine"
    partial = _wheel(tmp_path / "partial.whl", photos.PHOTOS[:-1])
    with pytest.raises(SystemExit, match=f"no {photos.PHOTOS[-1]}"):
        photos.extract(tmp_path / "other", partial)
