"""FFA-Net: the authors' checkpoint layout, registry facts, the tiny variant's outputs,
overrides, hand-checked pieces (names, shapes, parameter count, meta device and size:
``test_model_contract.py``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dreamprune_cli.models import build_model, get_model_info

NAME = "ffa"


@pytest.fixture(scope="module")
def official() -> nn.Module:
    return build_model(NAME, "official")


def test_official_loads_dataparallel_checkpoint(official: nn.Module, tmp_path) -> None:
    """The authors' container: a dict with 'model' holding 'module.'-prefixed keys."""
    info = get_model_info(NAME)
    assert info.checkpoint_key == "model" and info.checkpoint_module_prefix
    state = {f"module.{k}": v.clone() for k, v in official.state_dict().items()}
    path = tmp_path / "its_train_ffa_3_19.pk"
    torch.save({"model": state, "step": 10, "losses": [0.1], "psnrs": [], "ssims": []}, path)
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    stripped = {k.removeprefix("module."): v for k, v in ckpt[info.checkpoint_key].items()}
    fresh = build_model(NAME, "official")
    fresh.load_state_dict(stripped, strict=True)


def test_registry_facts(official: nn.Module) -> None:
    info = get_model_info(NAME)
    modules = dict(official.named_modules())
    assert modules["pre.0"].in_channels == 3
    assert info.output_index is None and info.channel_order == "RGB"
    assert info.mean == (0.64, 0.6, 0.58) and info.std == (0.14, 0.15, 0.152)
    assert info.task == "dehaze" and info.metric_space == "rgb"


def test_tiny_is_small_and_trains() -> None:
    tiny = build_model(NAME, "tiny")
    x = torch.randn(2, 3, 24, 20)
    out = tiny(x)
    assert isinstance(out, torch.Tensor) and out.shape == x.shape
    out.square().mean().backward()
    for name, p in tiny.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_overrides_change_the_module() -> None:
    tiny = build_model(NAME, "tiny")
    wider = build_model(NAME, "tiny", dim=32, blocks=1)
    assert wider.pre[0].out_channels == 32
    assert len(wider.g1.gp) == 2 and len(tiny.g1.gp) == 3
    two_groups = build_model(NAME, "tiny", gps=2)
    assert hasattr(two_groups, "g2") and not hasattr(two_groups, "g3")
    assert two_groups(torch.randn(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_global_residual_and_fusion() -> None:
    """With a zero last conv the network returns its (normalised) input exactly; the fusion
    weights are the sigmoid gates of ``ca`` applied group by group."""
    torch.manual_seed(0)
    model = build_model(NAME, "tiny").eval()
    with torch.no_grad():
        model.post[1].weight.zero_()
        model.post[1].bias.zero_()
        x = torch.randn(1, 3, 16, 16)
        assert torch.equal(model(x), x)

        # Fusion by hand: zero the second conv of ``ca`` so every gate is sigmoid(bias).
        model.ca[3].weight.zero_()
        model.ca[3].bias.copy_(torch.linspace(-2, 2, model.ca[3].out_channels))
        feats = [model.pre(x)]
        for g in (model.g1, model.g2, model.g3):
            feats.append(g(feats[-1]))
        gates = torch.sigmoid(model.ca[3].bias).view(3, model.dim, 1, 1)
        fused = sum(gates[i] * feats[i + 1] for i in range(3))
        captured: list[torch.Tensor] = []
        hook = model.palayer.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
        model(x)
        hook.remove()
        torch.testing.assert_close(captured[0], fused)


def test_block_hand_checked() -> None:
    """One block: ``x + PA(CA(conv2(relu(conv1(x)) + x)))``."""
    torch.manual_seed(0)
    block = build_model(NAME, "tiny").g1.gp[0].eval()
    x = torch.randn(1, 16, 6, 6)
    with torch.no_grad():
        res = torch.relu(block.conv1(x)) + x
        res = block.conv2(res)
        res = res * block.calayer.ca(res.mean(dim=(2, 3), keepdim=True))
        res = res * block.palayer.pa(res)
        torch.testing.assert_close(block(x), res + x)
