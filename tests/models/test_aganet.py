"""AGANet (DeRaindrop generator): the authors' checkpoint layout, registry facts, the tiny
variant's outputs, overrides and a hand-checked recurrent attention step (names, shapes,
parameter count, meta device and size: ``test_model_contract.py``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dreamprune_cli.models import build_model, get_model_info

NAME = "aganet"


@pytest.fixture(scope="module")
def official() -> nn.Module:
    return build_model(NAME, "official")


def test_official_loads_bare_state_dict(official: nn.Module, tmp_path) -> None:
    """The authors ship ``gen.pkl``: a bare state dict without ``module.`` prefixes."""
    info = get_model_info(NAME)
    assert info.checkpoint_key is None and not info.checkpoint_module_prefix
    path = tmp_path / "gen.pkl"
    torch.save(official.state_dict(), path)
    fresh = build_model(NAME, "official")
    fresh.load_state_dict(torch.load(path, map_location="cpu"), strict=True)


def test_registry_facts(official: nn.Module) -> None:
    info = get_model_info(NAME)
    modules = dict(official.named_modules())
    assert modules["det_conv0.0"].in_channels == 4 and modules["conv1.0"].in_channels == 4
    assert info.output_index == -1 and info.channel_order == "BGR"
    assert info.size_multiple == 4 and info.mean is None and info.std is None
    assert info.task == "raindrop"


def test_official_forward_structure(official: nn.Module) -> None:
    """(4 attention maps, 1/4-scale frame, 1/2-scale frame, image), on a tiny input."""
    with torch.no_grad():
        masks, frame1, frame2, image = official(torch.rand(1, 3, 8, 12))
    assert isinstance(masks, list) and len(masks) == 4
    assert all(m.shape == (1, 1, 8, 12) for m in masks)
    assert frame1.shape == (1, 3, 2, 3) and frame2.shape == (1, 3, 4, 6)
    assert image.shape == (1, 3, 8, 12)


def test_tiny_is_small_and_trains() -> None:
    tiny = build_model(NAME, "tiny")
    x = torch.rand(2, 3, 20, 16)
    out = tiny(x)
    assert isinstance(out, tuple) and len(out) == 4
    info = get_model_info(NAME)
    restored = out[info.output_index]
    assert restored.shape == x.shape
    # The authors' loss uses every output: attention maps, multi-scale frames and the image.
    loss = sum(m.square().mean() for m in out[0]) + out[1].mean() + out[2].mean()
    loss = loss + restored.square().mean()
    loss.backward()
    for name, p in tiny.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_overrides_change_the_module() -> None:
    model = build_model(NAME, "tiny", iterations=2, det_channels=4, det_blocks=3, width=8)
    assert model.conv_i[0].out_channels == 4 and model.conv_i[0].in_channels == 8
    assert hasattr(model, "det_conv3") and not hasattr(model, "det_conv4")
    assert model.conv1[0].out_channels == 8 and model.conv5[0].out_channels == 32
    assert model.output[0].in_channels == 4
    masks, *_ = model(torch.rand(1, 3, 8, 8))
    assert len(masks) == 2


def test_state_follows_input_dtype() -> None:
    model = build_model(NAME, "tiny").double()
    out = model(torch.rand(1, 3, 8, 8, dtype=torch.float64))
    assert out[-1].dtype == torch.float64 and out[0][0].dtype == torch.float64


def test_first_attention_step_hand_checked() -> None:
    """Step 1 sees a 0.5 map and zero LSTM state: ``c = i*g``, ``h = o*tanh(c)``; the
    autoencoder reads the last map."""
    torch.manual_seed(0)
    model = build_model(NAME, "tiny", iterations=1).eval()
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        feat = model.det_conv0(torch.cat((x, torch.full((1, 1, 8, 8), 0.5)), 1))
        feat = torch.relu(model.det_conv1(feat) + feat)
        gates_in = torch.cat((feat, torch.zeros_like(feat)), 1)
        cell = model.conv_i(gates_in) * model.conv_g(gates_in)
        hidden = model.conv_o(gates_in) * torch.tanh(cell)
        mask = model.det_conv_mask[0](hidden)
        masks, *_ = model(x)
        torch.testing.assert_close(masks[0], mask)

        captured: list[torch.Tensor] = []
        hook = model.conv1.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
        model(x)
        hook.remove()
        torch.testing.assert_close(captured[0], torch.cat((x, mask), 1))


def test_upsampling_block_shape_and_pad() -> None:
    """deconv: transposed conv (2x), top/left reflection pad, 2x2 stride-1 average, ReLU."""
    deconv = build_model(NAME, "tiny").deconv2
    assert isinstance(deconv[1], nn.ReflectionPad2d) and deconv[1].padding == (1, 0, 1, 0)
    assert isinstance(deconv[2], nn.AvgPool2d) and isinstance(deconv[3], nn.ReLU)
    y = deconv(torch.rand(1, deconv[0].in_channels, 5, 7))
    assert y.shape == (1, deconv[0].out_channels, 10, 14) and (y >= 0).all()
