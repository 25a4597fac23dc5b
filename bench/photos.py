"""Write scikit-image's six bundled natural photographs into a folder: clean scenes for
``bench/recovery.py --levers photos --photos-dir DIR``, standing in for the few clean photos
a user owns (none of them from a test set of the project's tasks).

The photos (scikit-image 0.26, ``skimage/data``; public domain or CC0 per its README):
``astronaut.png`` 512x512, ``chelsea.png`` 451x300, ``coffee.png`` 600x400, ``rocket.jpg``
640x427, ``motorcycle_left.png`` and ``motorcycle_right.png`` 741x500 (an indoor stereo pair
from Middlebury). Read from a scikit-image wheel (``pip download --no-deps scikit-image``) or
from the installed package; scikit-image is not a dependency of dreamprune.

Usage::

    pip download --no-deps scikit-image==0.26.0 -d /tmp/wheels
    python bench/photos.py --wheel /tmp/wheels/scikit_image-0.26.0-*.whl --out photos/
    python bench/photos.py --out photos/          # from an installed scikit-image
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import zipfile
from pathlib import Path

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
          "motorcycle_right.png")
"""The natural colour photographs among ``skimage/data``'s bundled files."""


def extract(out: Path, wheel: Path | None = None) -> list[Path]:
    """Copy :data:`PHOTOS` into ``out`` (created); return the written paths.

    Raises:
        SystemExit: no wheel given and scikit-image is not installed; a photo missing from
            the source; a file already in ``out`` with other contents.
    """
    if wheel is not None:
        archive = zipfile.ZipFile(wheel)
        def read(name: str) -> bytes:
            return archive.read(f"skimage/data/{name}")
    else:
        spec = importlib.util.find_spec("skimage")
        if spec is None or spec.origin is None:
            raise SystemExit("scikit-image is not installed: pass --wheel")
        data = Path(spec.origin).parent / "data"
        def read(name: str) -> bytes:
            return (data / name).read_bytes()
    contents = {}
    for name in PHOTOS:  # everything checked before anything is written
        try:
            contents[out / name] = read(name)
        except (KeyError, FileNotFoundError):
            raise SystemExit(f"{wheel or 'skimage/data'}: no {name}") from None
        path = out / name
        if path.exists() and path.read_bytes() != contents[path]:
            raise SystemExit(f"{path}: exists with other contents; not overwritten")
    out.mkdir(parents=True, exist_ok=True)
    for path, content in contents.items():
        partial = path.with_name(f".{path.name}.partial")
        partial.write_bytes(content)
        partial.replace(path)
    return list(contents)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--wheel", type=Path, default=None)
    args = parser.parse_args(argv)
    for path in extract(args.out, args.wheel):
        print(path, file=sys.stderr)


if __name__ == "__main__":
    main()
