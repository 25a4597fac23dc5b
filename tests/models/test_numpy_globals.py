"""``dreamprune_cli.models.numpy_globals``: the NumPy objects a weights-only load may rebuild."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamprune_cli.models.numpy_globals import numpy_safe_globals


def test_the_list_holds_plain_numbers_and_dtypes_only() -> None:
    allowed = numpy_safe_globals()
    assert np.dtype in allowed and np.ndarray in allowed
    assert type(np.dtype("float64")) in allowed  # numpy's per-dtype classes
    names = {getattr(item, "__name__", "") for item in allowed}
    assert not names & {"load", "save", "loadtxt", "system"}  # nothing that does I/O


def test_numpy_values_load_weights_only_with_them_and_not_without(tmp_path: Path) -> None:
    path = tmp_path / "history.pt"
    torch.save({"max_psnr": np.float64(31.25), "psnrs": np.array([30.0, 31.25])}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    with torch.serialization.safe_globals(numpy_safe_globals()):
        loaded = torch.load(path, weights_only=True)
    assert loaded["max_psnr"] == 31.25 and loaded["psnrs"].tolist() == [30.0, 31.25]
