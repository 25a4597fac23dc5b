"""``dreamprune_cli.runs.export``: the destination's format, the safetensors export from Python."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.loading import load_model
from dreamprune_cli.runs import export
from dreamprune_cli.runs.export import check_destination
from tests.helpers import run_settings, tiny_ffa_weights


def test_destination_suffix_chooses_the_format() -> None:
    assert check_destination(Path("a.safetensors")) == "safetensors"
    with pytest.raises(UsageError, match="expected a .safetensors or .onnx file name"):
        check_destination(Path("a.pt"))


def test_export_writes_a_file_that_loads_the_same(tmp_path: Path) -> None:
    weights = tiny_ffa_weights(tmp_path)
    out = tmp_path / "copy.safetensors"
    done = export.run(run_settings(weights=weights), out)
    assert (done.model, done.format, done.out_path, done.onnx) == ("ffa", "safetensors", out,
                                                                   None)
    assert done.tensors == len(load_model(None, weights=weights).network.state_dict())
    assert done.summary()["output"] == out and done.tables()[0].rows == [["ffa", done.tensors,
                                                                         out]]
    again = load_model(None, weights=out)
    for key, value in load_model(None, weights=weights).network.state_dict().items():
        assert torch.equal(again.network.state_dict()[key], value), key


def test_an_existing_destination_is_refused_before_loading(tmp_path: Path) -> None:
    out = tmp_path / "taken.safetensors"
    out.write_bytes(b"mine")
    with pytest.raises(UsageError, match="already exists; pass overwrite"):
        export.run(run_settings(weights=tmp_path / "missing.safetensors"), out)
    assert out.read_bytes() == b"mine"
