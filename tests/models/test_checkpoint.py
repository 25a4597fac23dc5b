"""Checkpoint containers, safe unpickling, strictness and safetensors export."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from dreamprune_cli.cli import app
from dreamprune_cli.errors import UsageError
from dreamprune_cli.models import build_model, get_model_info, list_models
from dreamprune_cli.models.checkpoint import read_checkpoint
from dreamprune_cli.models.loading import load_model

FAMILIES = [n for n in list_models() if n != "identity"]


def official_container(name: str, state: dict[str, torch.Tensor]) -> object:
    """Wrap ``state`` the way the model's authors save checkpoints."""
    info = get_model_info(name)
    if info.checkpoint_module_prefix:
        state = {f"module.{k}": v for k, v in state.items()}
    if info.checkpoint_key is None:
        return state
    container: dict[str, object] = {info.checkpoint_key: state}
    if name == "ffa":  # FFA-Net also stores its training history
        container.update(step=1000, max_psnr=30.5, max_ssim=0.95, psnrs=[29.0, 30.5],
                         ssims=[0.9, 0.95], losses=[0.1, 0.05])
    return container


@pytest.mark.parametrize("name", FAMILIES)
def test_official_container_loads_strict_and_evaluates(name: str, tmp_path: Path, runner,
                                                        pair_dirs) -> None:
    model = build_model(name)
    suffix = {"ffa": ".pk", "aganet": ".pkl", "durn_s": ".pt", "durn_s_p": ".pt"}.get(name, ".pth")
    path = tmp_path / f"official{suffix}"
    torch.save(official_container(name, model.state_dict()), path)
    loaded = load_model(name, weights=path)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.network.state_dict()[key], value), key
    if name in ("hinet", "ffa"):  # the two heaviest: loading is what matters here
        return
    inputs, targets = pair_dirs
    result = runner.invoke(app, ["evaluate", "--model", name, "--weights", str(path),
                                 "--input-dir", str(inputs), "--target-dir", str(targets),
                                 "--limit", "1", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output


def test_numpy_history_allowed(tmp_path: Path) -> None:
    import numpy as np

    model = build_model("ffa", "tiny")
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / "ffa.pk"
    torch.save({"model": state, "max_psnr": np.float64(31.2), "psnrs": [np.float64(30.0)]}, path)
    checkpoint = read_checkpoint(path, key="model")
    assert set(checkpoint.state_dict) == set(model.state_dict())


class _Payload:
    """Unpickling this runs ``os.system`` (a classic malicious checkpoint)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused(tmp_path: Path, runner) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _Payload(marker)}, path)
    with pytest.raises(UsageError, match="refused to unpickle"):
        read_checkpoint(path)
    raw = tmp_path / "evil_raw.pkl"  # a plain pickle (protocol 4) is refused too
    with raw.open("wb") as handle:
        pickle.dump({"x": _Payload(marker)}, handle)
    with pytest.raises(UsageError):
        read_checkpoint(raw)
    result = runner.invoke(app, ["evaluate", "--model", "ffa", "--weights", str(path)])
    assert result.exit_code == 2
    assert "refused to unpickle" in result.output and "Traceback" not in result.output
    assert not marker.exists()


def test_params_ema_preferred_and_module_prefix(tmp_path: Path) -> None:
    model = build_model("hinet", "tiny")
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in model.state_dict().items()}
    path = tmp_path / "basicsr.pth"
    torch.save({"params": model.state_dict(), "params_ema": ema}, path)
    checkpoint = read_checkpoint(path, key="params")
    key = next(iter(ema))
    assert torch.equal(checkpoint.state_dict[key], ema[key])
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    assert set(read_checkpoint(path).state_dict) == set(model.state_dict())


def test_mismatched_keys_listed(tmp_path: Path, runner) -> None:
    state = build_model("ffa", "tiny").state_dict()
    state.pop("pre.0.weight")
    state["extra.weight"] = torch.zeros(1)
    state["post.1.bias"] = torch.zeros(5)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(UsageError) as info:
        load_model("ffa", "tiny", weights=path)
    message = str(info.value)
    assert "1 missing: pre.0.weight" in message and "1 unexpected: extra.weight" in message
    assert "1 mis-shaped: post.1.bias (5,) != (3,)" in message and "\n" not in message
    loaded = load_model("ffa", "tiny", weights=path, strict=False)
    assert torch.equal(loaded.network.state_dict()["post.0.weight"], state["post.0.weight"])


def test_bad_containers(tmp_path: Path) -> None:
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(UsageError, match="cannot read checkpoint"):
        read_checkpoint(tmp_path / "text.pth")
    torch.save({"step": 3}, tmp_path / "nostate.pth")
    with pytest.raises(UsageError, match="no state dict found"):
        read_checkpoint(tmp_path / "nostate.pth")
    with pytest.raises(UsageError, match="no such file"):
        read_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(UsageError, match="not a valid safetensors"):
        read_checkpoint(tmp_path / "bad.safetensors")


def test_export_roundtrip_without_model(tmp_path: Path, runner) -> None:
    model = build_model("mprnet", "tiny")
    source = tmp_path / "mpr.pth"
    torch.save({"state_dict": model.state_dict()}, source)
    out = tmp_path / "mpr.safetensors"
    result = runner.invoke(app, ["export", "--model", "mprnet", "--variant", "tiny",
                                 "--weights", str(source), "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    loaded = load_model(None, weights=out)
    assert loaded.name == "mprnet" and loaded.config["n_feat"] == 8
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded.network(x)[0], model.eval()(x)[0])
    again = runner.invoke(app, ["export", "--model", "mprnet", "--variant", "tiny",
                                "--weights", str(source), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output
