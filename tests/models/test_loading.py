"""``dreamprune_cli.models.loading``: calling a loaded model, saving and reloading, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.loading import load_model, resolve_info, save_model


def test_loaded_model_restores_when_called() -> None:
    torch.manual_seed(0)
    loaded = load_model("hinet", "tiny")
    batch = torch.rand(2, 3, 36, 44)  # not a multiple of HINet's 4: padded and cropped back
    restored = loaded(batch)
    assert restored.shape == batch.shape and not restored.requires_grad
    with torch.no_grad():
        assert torch.equal(restored, loaded.adapter()(batch))
    single = loaded(batch[0])
    assert single.shape == (3, 36, 44)
    assert torch.allclose(single, restored[0], atol=1e-6)
    for bad in (torch.rand(1, 4, 32, 32), torch.zeros(3, 32, 32, dtype=torch.uint8),
                torch.rand(32, 32)):
        with pytest.raises(ValueError, match="expected a float RGB tensor"):
            loaded(bad)


def test_save_and_load_by_the_files_metadata(tmp_path: Path) -> None:
    torch.manual_seed(0)
    loaded = load_model("ffa", "tiny", overrides={"blocks": 1}, use_bundled=False)
    path = save_model(loaded, tmp_path / "ffa.safetensors")
    again = load_model(None, weights=path)  # the name and config come from the file
    assert (again.name, again.config, again.weights) == ("ffa", loaded.config, path)
    assert again.config["blocks"] == 1
    for key, value in loaded.network.state_dict().items():
        assert torch.equal(again.network.state_dict()[key], value), key
    with pytest.raises(UsageError, match="already exists"):
        save_model(loaded, path)


def test_refusals_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="has no variant 'huge'"):
        load_model("ffa", "huge", use_bundled=False)
    with pytest.raises(UsageError, match="unknown model 'nope'"):
        load_model("nope")
    with pytest.raises(UsageError, match="durn_s"):
        load_model("durn_s", "tiny", require_weights=True)  # no weights, none bundled
    assert resolve_info("ffa").name == "ffa"
