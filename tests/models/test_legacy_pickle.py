"""Issue 32 item 1: whole-module pickles (``torch.save(model)``) read without running code."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from dreamprune_cli.cli import app
from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.checkpoint import read_checkpoint
from dreamprune_cli.models.legacy_pickle import RefusedPickle, read_whole_module_pickle

AUTHOR_NET = '''
import torch
from torch import nn


class DeRain(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1))
        self.register_buffer("scratch", torch.zeros(2), persistent=False)

    def forward(self, x):
        return x + self.body(self.bn(self.conv1(x)))


def run_me(text):
    raise AssertionError("a function named by the pickle ran: " + text)


class Sneaky:
    """Unpickling this would call ``run_me`` (a function the pickle names)."""

    def __reduce__(self):
        return (run_me, ("boom",))
'''


class _System:
    """Unpickling this runs ``os.system`` (a classic malicious checkpoint)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _author_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str = "author_net"):
    """Import the author's file as module ``name`` (forgotten again by the caller)."""
    source = tmp_path / f"{name}.py"
    source.write_text(AUTHOR_NET)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


def _forget(name: str) -> None:
    sys.modules.pop(name, None)
    importlib.invalidate_caches()


@pytest.mark.parametrize("zipfile", [True, False], ids=["zip", "legacy"])
def test_whole_dataparallel_module_read_as_its_tensors(tmp_path: Path, zipfile: bool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    module = _author_module(tmp_path, monkeypatch)
    torch.manual_seed(3)
    wrapped = nn.DataParallel(module.DeRain())
    wrapped.module.bn.running_mean.add_(0.5)  # a buffer that must survive
    expected = {k: v.clone() for k, v in wrapped.module.state_dict().items()}
    path = tmp_path / "old.pth"
    torch.save(wrapped, path, _use_new_zipfile_serialization=zipfile)
    _forget("author_net")
    (tmp_path / "author_net.py").unlink()  # the class is gone, as on a user's machine
    with pytest.raises((AttributeError, ModuleNotFoundError)):
        torch.load(path, weights_only=False)  # what --trust-checkpoint did before

    for trust in (False, True):
        checkpoint = read_checkpoint(path, trust=trust)
        assert set(checkpoint.state_dict) == set(expected)  # module. stripped, no scratch
        for key, value in expected.items():
            assert torch.equal(checkpoint.state_dict[key], value), key
    (tmp_path / "again.py").write_text(AUTHOR_NET)  # an equivalent class loads it strictly
    equivalent = importlib.import_module("again").DeRain()
    equivalent.load_state_dict(checkpoint.state_dict, strict=True)
    _forget("again")


def test_class_from_authors_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _author_module(tmp_path, monkeypatch, "main_like")
    cls = module.DeRain
    monkeypatch.setattr(cls, "__module__", "__main__")
    monkeypatch.setattr(sys.modules["__main__"], "DeRain", cls, raising=False)
    network = cls()
    path = tmp_path / "main.pth"
    torch.save({"model": network, "epoch": 7}, path)
    monkeypatch.delattr(sys.modules["__main__"], "DeRain")
    _forget("main_like")
    raw, classes = read_whole_module_pickle(path)
    assert classes == ["__main__.DeRain"] and raw["epoch"] == 7
    checkpoint = read_checkpoint(path, key="model")
    assert set(checkpoint.state_dict) == set(network.state_dict())


def test_export_converts_a_whole_module_pickle(tmp_path: Path, runner,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    module = _author_module(tmp_path, monkeypatch, "exported_net")
    network = nn.DataParallel(module.DeRain())
    old = tmp_path / "OLD.pth"
    torch.save(network, old, _use_new_zipfile_serialization=False)
    _forget("exported_net")
    model_file = tmp_path / "derain.py"
    model_file.write_text(AUTHOR_NET)
    out = tmp_path / "new.safetensors"
    result = runner.invoke(app, ["export", "--model", f"{model_file}:DeRain", "--weights",
                                 str(old), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "read a whole-module pickle of class DataParallel(exported_net.DeRain)" \
        in result.output
    from safetensors.torch import load_file

    written = load_file(str(out))
    for key, value in network.module.state_dict().items():
        assert torch.equal(written[key], value), key


def test_pickle_calling_code_is_refused(tmp_path: Path, runner,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "X"
    module = _author_module(tmp_path, monkeypatch, "evil_net")
    evil = tmp_path / "evil.pth"
    network = module.DeRain()
    network.payload = _System(marker)  # inside a whole-module pickle
    torch.save(network, evil)
    sneaky = tmp_path / "sneaky.pth"
    torch.save({"model": module.DeRain(), "hook": module.Sneaky()}, sneaky)
    _forget("evil_net")

    with pytest.raises(RefusedPickle, match="imports posix.system|imports nt.system"):
        read_whole_module_pickle(evil)
    with pytest.raises(UsageError, match="refused to unpickle: it calls evil_net.run_me"):
        read_checkpoint(sneaky)
    out = tmp_path / "new.safetensors"
    for path in (evil, sneaky):
        result = runner.invoke(app, ["export", "--model", "ffa", "--weights", str(path),
                                     "--out", str(out)])
        assert result.exit_code == 2, result.output
        assert "refused to unpickle" in result.output and "Traceback" not in result.output
    assert not marker.exists() and not out.exists()


def test_trusted_pickle_whose_classes_are_gone_names_both_failures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = _author_module(tmp_path, monkeypatch, "gone_net")
    path = tmp_path / "sneaky.pth"
    torch.save({"model": module.DeRain(), "hook": module.Sneaky()}, path)
    _forget("gone_net")
    (tmp_path / "gone_net.py").unlink()
    with pytest.raises(UsageError) as caught:
        read_checkpoint(path, trust=True)
    message = str(caught.value)
    assert "No module named 'gone_net'" in message and "it calls gone_net.run_me" in message
    assert "pass trust_checkpoint" not in message
