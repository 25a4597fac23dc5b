"""pyproject.toml ships every subpackage (a wheel built from an explicit list would silently
leave a new one out; the tests, run from the checkout, would not notice)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(ROOT).parts)
             for init in (ROOT / "dreamprune_cli").rglob("__init__.py")}
    assert found - listed == set(), "add them to [tool.setuptools] packages"
