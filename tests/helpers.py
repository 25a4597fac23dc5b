"""Helpers shared by the tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from dreamprune_cli.models.adapter import RestorationAdapter
from dreamprune_cli.models.checkpoint import save_safetensors
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.models.registry import ModelInfo, build_model, get_model_info, model_config
from dreamprune_cli.prune.unstructured.masks import (attach_masks, magnitude_masks,
                                                     prunable_modules, set_masks)
from dreamprune_cli.settings import ResolvedSettings, resolve_settings

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


def tiny_loaded(name: str, **overrides: object) -> LoadedModel:
    """A registered model's tiny variant (seed 0, eval mode), loaded without weights."""
    torch.manual_seed(0)
    config = model_config(name, "tiny", **overrides)
    network = build_model(name, "tiny", **overrides).eval()
    return LoadedModel(name=name, info=get_model_info(name), network=network, config=config,
                       weights=None)


def run_settings(**values: object) -> ResolvedSettings:
    """Settings as a run from Python takes them: CPU, one thread, no environment."""
    return resolve_settings({"device": "cpu", "threads": 1, **values}, env={})


def tiny_ffa_weights(tmp_path: Path) -> Path:
    """A random one-block tiny FFA (seed 0) saved as ``tmp_path/ffa.safetensors``."""
    torch.manual_seed(0)
    return save_safetensors(tmp_path / "ffa.safetensors",
                            build_model("ffa", "tiny", blocks=1).state_dict(), "ffa",
                            model_config("ffa", "tiny", blocks=1))


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


class Plus(nn.Module):
    """A residual block: ``x + conv(x)``."""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class KnownCosts(nn.Module):
    """Head conv, three residual blocks of widths 8 (1x1), 8 (3x3), 8 (5x5), tail conv.

    MACs at 3x8x8 (64 positions), weights plus bias: head 8*3+8 = 32 per position; block k x k:
    8*8*k*k + 8; tail 3*8 + 3 = 27.
    """

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 1)
        self.small = Plus(8)
        self.small.conv = nn.Conv2d(8, 8, 1)
        self.mid = Plus(8)
        self.big = Plus(8)
        self.big.conv = nn.Conv2d(8, 8, 5, padding=2)
        self.tail = nn.Conv2d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.big(self.mid(self.small(self.head(x))))) + x


def toy_loaded(network: nn.Module, **info: object) -> LoadedModel:
    """``network`` as a loaded model named ``toy`` (registry facts from ``info``)."""
    entry = ModelInfo(name="toy", factory=lambda: network, task="derain", description="toy",
                      **info)  # type: ignore[arg-type]
    return LoadedModel(name="toy", info=entry, network=network.eval(), config={}, weights=None)


def masked_ffa_pair(seed: int = 0) -> tuple[RestorationAdapter, RestorationAdapter]:
    """A tiny FFA teacher and a copy with half of every prunable layer masked, both wrapped
    in their adapters (seeded by ``seed``)."""
    torch.manual_seed(seed)
    info = get_model_info("ffa")
    network = build_model("ffa", "tiny", blocks=1)
    student_net = copy.deepcopy(network)
    names = [n for n, _ in prunable_modules(student_net)]
    attach_masks(student_net, names)
    modules = dict(student_net.named_modules())
    set_masks(student_net, magnitude_masks(
        student_net, {n: modules[n].weight.numel() // 2 for n in names}))
    return RestorationAdapter(network, info), RestorationAdapter(student_net, info)
