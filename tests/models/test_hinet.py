"""HINet: the authors' checkpoint layout, registry facts, the tiny variant's outputs,
overrides, hand-checked pieces (names, shapes, parameter count, meta device and size:
``test_model_contract.py``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dreamprune_cli.models import build_model, get_model_info
from dreamprune_cli.models.hinet import ConvBlock

NAME = "hinet"


@pytest.fixture(scope="module")
def official() -> nn.Module:
    return build_model(NAME, "official")


def test_loads_basicsr_checkpoint(tmp_path) -> None:
    """The authors' container: a BasicSR dict with the weights under 'params'."""
    info = get_model_info(NAME)
    assert info.checkpoint_key == "params" and not info.checkpoint_module_prefix
    model = build_model(NAME, "tiny")
    path = tmp_path / "HINet-Rain13k.pth"
    torch.save({"params": model.state_dict()}, path)
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    fresh = build_model(NAME, "tiny")
    fresh.load_state_dict(ckpt[info.checkpoint_key], strict=True)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x)[-1], fresh(x)[-1])


def test_registry_facts(official: nn.Module) -> None:
    info = get_model_info(NAME)
    modules = dict(official.named_modules())
    assert modules["conv_01"].in_channels == modules["conv_02"].in_channels == 3
    assert modules["sam12.conv2"].out_channels == modules["sam12.conv3"].in_channels == 3
    assert info.output_index == -1 and info.channel_order == "RGB"
    assert info.mean is None and info.std is None
    assert info.size_multiple == 16 and info.metric_space == "y" and info.task == "derain"
    assert info.variants["official"]["wf"] == 64 and info.variants["official"]["depth"] == 5


def test_tiny_is_small_and_trains() -> None:
    info = get_model_info(NAME)
    tiny = build_model(NAME, "tiny")
    x = torch.rand(2, 3, 32, 48)
    outs = tiny(x)
    assert isinstance(outs, list) and len(outs) == 2
    restored = outs[info.output_index]
    assert restored.shape == x.shape and outs[0].shape == x.shape
    (restored.square().mean() + outs[0].square().mean()).backward()
    grads = [p.grad for p in tiny.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_overrides_change_module() -> None:
    model = build_model(NAME, "tiny", wf=8, depth=3, hin_position_left=1, hin_position_right=1)
    assert model.conv_01.out_channels == 8 and len(model.down_path_1) == 3
    assert len(model.up_path_2) == len(model.skip_conv_2) == 2
    # HIN only at level 1 of each encoder; CSFF only in stage-2 downsampling blocks.
    hin = [i for i, b in enumerate(model.down_path_1) if b.norm is not None]
    assert hin == [1]
    assert [hasattr(b, "csff_enc") for b in model.down_path_2] == [True, True, False]
    assert not any(hasattr(b, "csff_enc") for b in model.down_path_1)
    slope = build_model(NAME, "tiny", relu_slope=0.1)
    assert slope.down_path_1[0].relu_1.negative_slope == 0.1
    assert model(torch.rand(1, 3, 8, 8))[-1].shape == (1, 3, 8, 8)


def test_half_instance_norm_block() -> None:
    """HIN: affine instance norm on the FIRST half of conv_1's channels, slope 0.2, 1x1 skip."""
    torch.manual_seed(0)
    block = ConvBlock(4, 6, 0.2, downsample=True, hin=True).eval()
    with torch.no_grad():
        block.norm.weight.copy_(torch.tensor([2.0, -1.0, 0.5]))
        block.norm.bias.copy_(torch.tensor([0.3, 0.0, -0.2]))
    x = torch.randn(2, 4, 8, 8)
    h = block.conv_1(x)
    mean = h[:, :3].mean(dim=(2, 3), keepdim=True)
    var = h[:, :3].var(dim=(2, 3), unbiased=False, keepdim=True)
    normed = (h[:, :3] - mean) / torch.sqrt(var + 1e-5)
    normed = normed * block.norm.weight.view(1, 3, 1, 1) + block.norm.bias.view(1, 3, 1, 1)
    h = F.leaky_relu(torch.cat([normed, h[:, 3:]], dim=1), 0.2)
    full = F.leaky_relu(block.conv_2(h), 0.2) + block.identity(x)
    with torch.no_grad():
        down, out = block(x)
    torch.testing.assert_close(out, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(down, block.downsample(full), atol=1e-5, rtol=1e-5)
    assert down.shape == (2, 6, 4, 4) and block.downsample.bias is None


def test_outputs_are_residual_images() -> None:
    """Stage 1 image = sam12.conv2(features) + x, stage 2 = last(features) + x."""
    model = build_model(NAME, "tiny").eval()
    with torch.no_grad():
        for conv in (model.sam12.conv2, model.last):
            conv.weight.zero_()
            conv.bias.zero_()
        x = torch.rand(1, 3, 16, 16)
        out_1, out_2 = model(x)
    assert torch.equal(out_1, x) and torch.equal(out_2, x)


def test_csff_uses_stage1_features() -> None:
    """Stage 2 depends on the stage-1 encoder/decoder through csff_enc/csff_dec."""
    model = build_model(NAME, "tiny").eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        before = model(x)[-1]
        model.down_path_2[0].csff_dec.bias.add_(1.0)
        after = model(x)[-1]
    assert not torch.allclose(before, after)
