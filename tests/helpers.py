"""Helpers shared by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

REFERENCE_DIR = Path(__file__).parent / "data" / "state_dicts"


def reference_state_dict(name: str) -> dict[str, tuple[int, ...]]:
    """Every parameter and buffer name -> shape that the authors' class declares."""
    data = json.loads((REFERENCE_DIR / f"{name}.json").read_text())
    entries = list(data["parameters"]) + list(data.get("buffers", []))
    return {key: tuple(shape) for key, shape in entries}


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> contents), to compare written sets."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def num_params(model: nn.Module) -> int:
    """Number of parameter elements (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters())


def reference_num_params(name: str) -> int:
    """The parameter count the reference file records for the authors' class."""
    return int(json.loads((REFERENCE_DIR / f"{name}.json").read_text())["num_parameters"])


def assert_matches_reference(model: nn.Module, name: str) -> None:
    """Fail with the differing keys when ``model.state_dict()`` differs from the reference."""
    expected = reference_state_dict(name)
    actual = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    mis_shaped = sorted(k for k in set(expected) & set(actual) if expected[k] != actual[k])
    assert not (missing or unexpected or mis_shaped), (
        f"missing {missing[:10]}, unexpected {unexpected[:10]}, "
        f"mis-shaped {[(k, actual[k], expected[k]) for k in mis_shaped[:10]]}"
    )

# The real checkpoints and test sets (never copied into the repository): beside the checkout,
# as on the developers' machines and in CI. Tests that need them skip with this reason.
REALDATA_DIR = (Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata").resolve()
REALDATA_MISSING = f"real checkpoints/test sets not found at {REALDATA_DIR}"


def realdata(relative: str) -> Path:
    """Path of a file under the shared real-data folder, skipping the test when absent."""
    import pytest

    path = REALDATA_DIR / relative
    if not path.exists():
        pytest.skip(f"{REALDATA_MISSING} ({relative})")
    return path


class Twice(nn.Module):
    """A stem, one convolution applied ``repeats`` times (shared weights), a head."""

    def __init__(self, repeats: int = 2) -> None:
        super().__init__()
        self.repeats = repeats
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.body = nn.Conv2d(6, 6, 3, padding=1)
        self.head = nn.Conv2d(6, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        for _ in range(self.repeats):
            y = torch.relu(self.body(y))
        return self.head(y)
