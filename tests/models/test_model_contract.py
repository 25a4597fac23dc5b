"""What every registered model promises, checked once per registry entry (the way timm's
``tests/test_models.py`` checks its zoo): the family files keep only what is their own
(the authors' key layouts, reference state dicts, hand-checked blocks, special behaviours).

For each name of :func:`~dreamprune_cli.models.registry.list_models`, its ``tiny`` variant
(``official`` where there is none):

* the adapter (:meth:`~dreamprune_cli.models.loading.LoadedModel.adapter`) maps RGB of a
  size that is no multiple of the model's to RGB of the same shape, finite;
* it builds on the meta device and runs there (no memory; the MAC counter and the loader's
  parameter check rely on it): a network that makes tensors of its own in ``forward``
  (AGA-Net's LSTM state and first attention map) makes them on the input's device;
* the MAC counter reads it (MACs and parameters);
* where ``tests/data/state_dicts`` holds the authors' reference for the name, the
  ``official`` variant has every parameter and buffer name and shape of it (each tensor once:
  MPRNet shares one PReLU slope) and its parameter count;
* ``save_model`` and a strict ``load_model(None, weights=...)`` give back the same model,
  config and tensors, with bit-identical outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dreamprune_cli.flops import count_costs
from dreamprune_cli.models.adapter import RestorationAdapter, network_input_size
from dreamprune_cli.models.loading import load_model, save_model
from dreamprune_cli.models.registry import build_model, get_model_info, list_models
from tests.helpers import REFERENCE_DIR, num_params, reference_num_params, reference_state_dict

NAMES = list_models()
REFERENCED = [name for name in NAMES if (REFERENCE_DIR / f"{name}.json").is_file()]
SIZE = 32  # a multiple of every size_multiple in the zoo (1, 2, 4, 8, 16)


def _variant(name: str) -> str:
    return "tiny" if "tiny" in get_model_info(name).variants else "official"


def test_the_zoo_is_covered() -> None:
    assert {"ffa", "mprnet", "hinet", "durn_s", "durn_s_p", "aganet", "gcanet",
            "prenet"} <= set(NAMES)


def test_the_authors_references_are_covered() -> None:
    assert {"ffa", "mprnet", "hinet", "durn_s", "durn_s_p", "aganet"} <= set(REFERENCED)


@pytest.mark.parametrize("name", REFERENCED)
def test_official_matches_the_authors_reference(name: str) -> None:
    with torch.device("meta"):  # names and shapes only
        network = build_model(name, "official")
    tensors = {key: tuple(value.shape)
               for key, value in [*network.named_parameters(), *network.named_buffers()]}
    expected = reference_state_dict(name)
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    mis_shaped = sorted(k for k in set(expected) & set(tensors) if expected[k] != tensors[k])
    assert not (missing or unexpected or mis_shaped), (missing[:10], unexpected[:10],
                                                       mis_shaped[:10])
    assert num_params(network) == reference_num_params(name)


@pytest.mark.parametrize("name", NAMES)
def test_registry_layers_are_image_convolutions(name: str) -> None:
    """The layer the dream loss reads (``penultimate_layer``) makes the 3-channel image, and
    every layer pruning leaves alone by default (``prune_exclude``) is a ``Conv2d``."""
    info = get_model_info(name)
    with torch.device("meta"):
        modules = dict(build_model(name, _variant(name)).named_modules())
    if info.penultimate_layer is not None:
        last = modules[info.penultimate_layer]
        assert isinstance(last, torch.nn.Conv2d) and last.out_channels == 3
    for layer in info.prune_exclude:
        assert isinstance(modules[layer], torch.nn.Conv2d), layer


@pytest.mark.parametrize("name", [n for n in NAMES if {"tiny", "official"}
                                  <= set(get_model_info(n).variants)])
def test_tiny_is_at_most_five_percent_of_official(name: str) -> None:
    with torch.device("meta"):
        tiny, official = build_model(name, "tiny"), build_model(name, "official")
    assert num_params(tiny) <= 0.05 * num_params(official)


@pytest.mark.parametrize("name", NAMES)
def test_adapter_forward_keeps_the_shape(name: str) -> None:
    torch.manual_seed(0)
    loaded = load_model(name, _variant(name), use_bundled=False)
    x = torch.rand(2, 3, SIZE - 2, SIZE + 2)  # padded to the size multiple and cropped back
    with torch.no_grad():
        out = loaded.adapter()(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_meta_device(name: str) -> None:
    info = get_model_info(name)
    with torch.device("meta"):
        network = build_model(name, _variant(name))
        out = RestorationAdapter(network, info)(torch.empty(1, 3, SIZE, SIZE, device="meta"))
    assert out.shape == (1, 3, SIZE, SIZE) and out.device.type == "meta"


@pytest.mark.parametrize("name", NAMES)
def test_macs_are_counted(name: str) -> None:
    info = get_model_info(name)
    network = build_model(name, _variant(name))
    report = count_costs(network, network_input_size(info, SIZE))
    params = sum(p.numel() for p in network.parameters())
    assert report.params == params
    assert report.macs > 0 if params else report.macs == 0


@pytest.mark.parametrize("name", NAMES)
def test_save_and_strict_reload(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    loaded = load_model(name, _variant(name), use_bundled=False)
    path = save_model(loaded, tmp_path / f"{name}.safetensors")
    again = load_model(None, weights=path)  # the file names the model and its config
    assert again.name == name
    # the config travels as JSON (tuples come back as lists)
    assert again.config == json.loads(json.dumps(loaded.config))
    before, after = loaded.network.state_dict(), again.network.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    x = torch.rand(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(again.adapter()(x), loaded.adapter()(x))
