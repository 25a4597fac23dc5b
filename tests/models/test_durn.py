"""DuRN-S (rain streaks) and DuRN-S-P (raindrops): PyTorch 0.3 state dicts, tiny variants'
outputs, details (names, shapes, parameter count: ``test_model_contract.py``)."""

from __future__ import annotations

import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from dreamprune_cli.models import build_model, get_model_info
from dreamprune_cli.models.loading import load_model
from tests.helpers import reference_state_dict

FAMILIES = ("durn_s", "durn_s_p")


def _randomize_batchnorm(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so that eval mode matters."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)


def _pytorch_0_3_state_dict(name: str) -> OrderedDict[str, torch.Tensor]:
    """A state dict as the authors' PyTorch 0.3.1 wrote it: the keys of their class (the
    reference) in its order, BatchNorm with running statistics but no ``num_batches_tracked``
    (added in 0.4.1), no ``_metadata`` (0.4) and random values."""
    gen = torch.Generator().manual_seed(0)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, shape in reference_state_dict(name).items():
        if key.endswith("num_batches_tracked"):
            continue
        values = torch.rand(shape, generator=gen)
        state[key] = values + 0.5 if key.endswith("running_var") else (values - 0.5) * 0.05
    return state


@pytest.mark.parametrize("name", FAMILIES)
def test_official_loads_pytorch_0_3_state_dict(name: str, tmp_path: Path) -> None:
    """The authors saved with PyTorch 0.3.1 (legacy, pre-zip serialization; BatchNorm without
    ``num_batches_tracked``): such a file loads strictly through ``load_model``."""
    state = _pytorch_0_3_state_dict(name)
    assert not any(key.endswith("num_batches_tracked") for key in state)
    assert any(key.endswith("running_mean") for key in state)
    path = tmp_path / f"{name}.pt"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)  # the legacy format, not the zip one of PyTorch 1.6+

    loaded = load_model(name, "official", weights=path)  # strict by default
    loaded_state = loaded.network.state_dict()
    assert set(loaded_state) == set(reference_state_dict(name))
    for key, value in state.items():
        assert torch.equal(loaded_state[key], value), key
    assert all(int(loaded_state[key]) == 0 for key in loaded_state
               if key.endswith("num_batches_tracked"))
    with torch.no_grad():
        out = loaded.network.eval()(torch.rand(1, 3, 16, 16))
    assert out.shape == (1, 3, 16, 16) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", FAMILIES)
def test_tiny_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, "tiny")
    x = torch.rand(2, 3, 32, 36)  # multiples of both size_multiple values (1 and 4)
    out = model(x)
    assert isinstance(out, torch.Tensor) and out.shape == x.shape
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    # Every parameter except DuRN-S-P's unused PReLU receives a gradient.
    unused = {"prelu.weight"} if name == "durn_s_p" else set()
    assert {n for n, p in model.named_parameters() if p.grad is None} == unused


def test_constructor_overrides() -> None:
    model = build_model("durn_s", "tiny", width=8, se_hidden=2, blocks=[[3, 3, 1], [5, 3, 2]])
    assert model.conv1.conv2d.out_channels == 8
    assert model.block2.up_conv.conv2d.kernel_size == (5, 5)
    assert model.block2.up_conv.conv2d.dilation == (2, 2)
    assert model.block1.se.se.fc[0].out_features == 2
    assert not hasattr(model, "block3")

    model = build_model("durn_s_p", "tiny", inner=24, res_blocks=((3, 2),), se_hidden=4)
    assert model.conv3.out_channels == 24 and model.deconv1[0].in_channels == 24
    names = [n for n, _ in model.named_children() if n.startswith("rud")]
    assert names == ["rud1", "rud2", "rud3"]
    assert isinstance(model.rud3.se, nn.Identity)  # a DuRB-P block: no SE in T2
    assert model.rud1.se.se.fc[0].out_features == 4


@pytest.mark.parametrize("name", FAMILIES)
def test_model_info_module_names(name: str) -> None:
    info = get_model_info(name)
    model = build_model(name, "tiny")
    modules = dict(model.named_modules())
    assert info.penultimate_layer in info.prune_exclude
    assert modules[info.prune_exclude[0]].in_channels == 3
    assert info.output_index is None and info.checkpoint_key is None
    assert info.metric_space == "y" and info.mean is None


def test_channel_orders_and_sizes() -> None:
    assert get_model_info("durn_s").channel_order == "RGB"
    assert get_model_info("durn_s_p").channel_order == "BGR"
    # DuRN-S is stride 1 everywhere: any size works (>= 16 for the official reflection pads).
    model = build_model("durn_s", "tiny").eval()
    assert get_model_info("durn_s").size_multiple == 1
    assert model(torch.rand(1, 3, 17, 23)).shape == (1, 3, 17, 23)
    # DuRN-S-P downsamples by 4 and only matches the input size at multiples of 4.
    model = build_model("durn_s_p", "tiny").eval()
    assert get_model_info("durn_s_p").size_multiple == 4
    with pytest.raises(RuntimeError):
        model(torch.rand(1, 3, 30, 32))


@pytest.mark.parametrize(("name", "last", "sign"), [("durn_s", "conv4", 1.0),
                                                    ("durn_s_p", "end_conv", -1.0)])
def test_output_is_input_plus_or_minus_tanh(name: str, last: str, sign: float) -> None:
    """DuRN-S returns ``tanh(conv) + x``, DuRN-S-P ``x - tanh(conv)``: pinned via the last conv."""
    model = build_model(name, "tiny").eval()
    conv = getattr(model, last).conv2d
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        out = model(x)
    expected = x + sign * torch.tanh(conv.bias).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected)


def test_padding_styles() -> None:
    """DuRN-S reflection-pads every conv (dilated too); DuRN-S-P zero-pads its dilated ones."""
    durn_s = build_model("durn_s", "official")
    assert isinstance(durn_s.block6.up_conv.reflection_pad, nn.ReflectionPad2d)
    assert durn_s.block6.up_conv.reflection_pad.padding == (15, 15, 15, 15)  # 3 * (11 - 1) / 2
    assert durn_s.block6.up_conv.conv2d.padding == (0, 0)
    durn_s_p = build_model("durn_s_p", "official")
    assert durn_s_p.rud1.up_conv.conv2d.padding == (12, 12)
    assert isinstance(durn_s_p.rud1.up_conv.reflection_pad, nn.Identity)
    assert isinstance(durn_s_p.rud5.up_conv.reflection_pad, nn.ReflectionPad2d)  # 5x5, dilation 1
    assert durn_s_p.conv1.padding == (1, 1) and durn_s_p.conv1.kernel_size == (5, 5)


def test_eval_uses_running_stats() -> None:
    """Eval mode is deterministic per sample (BatchNorm running statistics, not batch ones)."""
    torch.manual_seed(0)
    model = build_model("durn_s_p", "tiny")
    _randomize_batchnorm(model)
    model.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        both = model(x)
        first = model(x[:1])
    torch.testing.assert_close(both[:1], first)
