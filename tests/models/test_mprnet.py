"""MPRNet: the shared PReLU and its repeated state-dict names, registry facts, the tiny
variant's outputs, overrides, details (names, shapes, parameter count, meta device and size:
``test_model_contract.py``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dreamprune_cli.models import build_model, get_model_info
from dreamprune_cli.models.checkpoint import read_checkpoint
from dreamprune_cli.models.mprnet import CAB, SAM, DownSample
from tests.helpers import reference_num_params, reference_state_dict

NAME = "mprnet"


def _cab_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, CAB)]


@pytest.fixture(scope="module")
def official() -> nn.Module:
    return build_model(NAME, "official")


def test_state_dict_repeats_the_shared_slope(official: nn.Module) -> None:
    """The reference lists the shared PReLU slope once (it was taken from
    ``named_parameters``; the contract test checks every name, shape and the count against
    it); the authors' ``state_dict`` (what their checkpoints hold) repeats the slope under
    every CAB."""
    expected = reference_state_dict(NAME)
    assert reference_num_params(NAME) == 3_637_249
    aliases = {f"{cab}.body.1.weight" for cab in _cab_names(official)} - set(expected)
    assert len(aliases) == 54  # 55 CABs, the first one's name is in the reference
    state = official.state_dict()
    assert set(state) == set(expected) | aliases
    slope = state["shallow_feat1.1.body.1.weight"]
    assert all(state[k].data_ptr() == slope.data_ptr() for k in aliases)


def test_prelu_is_shared(official: nn.Module) -> None:
    prelus = {id(m) for m in official.modules() if isinstance(m, nn.PReLU)}
    assert len(prelus) == 1
    first = official.shallow_feat1[1].body[1]
    assert official.stage3_orsnet.orb3.body[7].body[1] is first
    assert official.stage2_decoder.skip_attn2.body[1] is first
    assert first.weight.shape == (1,) and first.weight.item() == pytest.approx(0.25)


def test_loads_authors_container(tmp_path) -> None:
    """`.pth` dict with the weights under 'state_dict', saved from DataParallel."""
    info = get_model_info(NAME)
    assert info.checkpoint_key == "state_dict"
    model = build_model(NAME, "tiny").eval()
    with torch.no_grad():
        model.shallow_feat1[1].body[1].weight.fill_(0.1)
    path = tmp_path / "model_deraining.pth"
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 250, "state_dict": state, "optimizer": {}}, path)
    ckpt = read_checkpoint(path, key=info.checkpoint_key)
    fresh = build_model(NAME, "tiny").eval()
    fresh.load_state_dict(ckpt.state_dict, strict=True)
    assert fresh.stage3_orsnet.orb1.body[0].body[1].weight.item() == pytest.approx(0.1)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x)[0], fresh(x)[0])


def test_registry_facts(official: nn.Module) -> None:
    info = get_model_info(NAME)
    modules = dict(official.named_modules())
    tail = modules[info.penultimate_layer]
    assert info.penultimate_layer == "tail"
    assert isinstance(tail, nn.Conv2d) and tail.out_channels == 3 and tail.in_channels == 56
    for name in info.prune_exclude:
        conv = modules[name]
        assert isinstance(conv, nn.Conv2d) and 3 in (conv.in_channels, conv.out_channels)
    image_convs = {n for n, m in modules.items()
                   if isinstance(m, nn.Conv2d) and 3 in (m.in_channels, m.out_channels)}
    assert image_convs == set(info.prune_exclude)
    assert info.output_index == 0 and info.channel_order == "RGB"
    assert info.mean is None and info.std is None
    assert info.size_multiple == 8 and info.metric_space == "y" and info.task == "derain"
    assert info.crop_border == 0
    official_kw = info.variants["official"]
    assert (official_kw["n_feat"], official_kw["scale_unetfeats"], official_kw["scale_orsnetfeats"],
            official_kw["num_cab"], official_kw["reduction"], official_kw["bias"]) == (
        40, 20, 16, 8, 4, False)


def test_tiny_is_small_and_trains() -> None:
    info = get_model_info(NAME)
    tiny = build_model(NAME, "tiny")
    x = torch.rand(2, 3, 32, 48)
    outs = tiny(x)
    assert isinstance(outs, list) and len(outs) == 3
    assert all(o.shape == x.shape for o in outs)
    restored = outs[info.output_index]
    # the authors' loss supervises all three stage images
    sum(o.square().mean() for o in outs).backward()
    grads = [p.grad for p in tiny.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert restored is outs[0]


def test_overrides_change_module() -> None:
    model = build_model(NAME, "tiny", n_feat=12, scale_unetfeats=4, scale_orsnetfeats=4,
                        num_cab=3)
    assert model.shallow_feat1[0].out_channels == 12
    assert model.stage1_encoder.encoder_level3[0].body[0].out_channels == 20
    assert len(model.stage3_orsnet.orb2.body) == 4  # 3 CABs + closing conv
    assert model.tail.in_channels == 16
    assert model(torch.rand(1, 3, 16, 24))[0].shape == (1, 3, 16, 24)

    biased = build_model(NAME, "tiny", bias=True)
    assert biased.shallow_feat1[1].body[0].bias is not None
    assert biased.stage2_encoder.csff_enc1.bias is not None and biased.tail.bias is not None
    # as in the authors' code, the resampling 1x1 convs and the ORB's closing conv never have one
    assert biased.stage1_encoder.down12.down[1].bias is None
    assert biased.stage3_orsnet.up_enc1.up[1].bias is None
    assert biased.stage3_orsnet.orb1.body[-1].bias is None


def test_meta_device() -> None:
    with torch.device("meta"):
        model = build_model(NAME, "tiny")
    outs = model(torch.empty(1, 3, 64, 64, device="meta"))
    assert [o.shape for o in outs] == [(1, 3, 64, 64)] * 3
    assert outs[0].device.type == "meta"


def test_multi_patch_hierarchy() -> None:
    """Stage 1 works on quarter patches, decoded per half: its top half sees only the top half
    of the input; stages 2 and 3 see the whole image."""
    torch.manual_seed(0)
    model = build_model(NAME, "tiny").eval()
    x = torch.rand(1, 3, 32, 40)
    y = x.clone()
    y[:, :, 16:] = torch.rand(1, 3, 16, 40)
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.equal(a[2][:, :, :16], b[2][:, :, :16])
    assert not torch.equal(a[2][:, :, 16:], b[2][:, :, 16:])
    assert not torch.allclose(a[1][:, :, :16], b[1][:, :, :16])
    assert not torch.allclose(a[0][:, :, :16], b[0][:, :, :16])


def test_stage3_is_residual_on_input() -> None:
    model = build_model(NAME, "tiny").eval()
    with torch.no_grad():
        model.tail.weight.zero_()
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x)[0], x)


def test_sam_by_hand() -> None:
    torch.manual_seed(0)
    sam = SAM(6, 1, bias=False)
    x, img = torch.randn(2, 6, 5, 7), torch.rand(2, 3, 5, 7)
    w1, w2, w3 = (c.weight[:, :, 0, 0] for c in (sam.conv1, sam.conv2, sam.conv3))
    stage_img = torch.einsum("oc,bchw->bohw", w2, x) + img
    gate = torch.sigmoid(torch.einsum("oc,bchw->bohw", w3, stage_img))
    feats = torch.einsum("oc,bchw->bohw", w1, x) * gate + x
    with torch.no_grad():
        got_feats, got_img = sam(x, img)
    torch.testing.assert_close(got_img, stage_img, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_feats, feats, atol=1e-5, rtol=1e-5)


def test_cab_by_hand() -> None:
    torch.manual_seed(0)
    act = nn.PReLU(init=0.3)
    cab = CAB(8, 3, 4, bias=False, act=act)
    x = torch.randn(2, 8, 6, 6)
    conv_a, _, conv_b = cab.body
    res = conv_b(F.prelu(conv_a(x), torch.tensor([0.3])))
    squeeze = res.mean(dim=(2, 3), keepdim=True)
    gate = torch.sigmoid(cab.CA.conv_du[2](torch.relu(cab.CA.conv_du[0](squeeze))))
    with torch.no_grad():
        torch.testing.assert_close(cab(x), res * gate + x, atol=1e-5, rtol=1e-5)


def test_downsample_is_2x2_average_then_1x1() -> None:
    """Bilinear x0.5 with align_corners=False averages 2x2 blocks (no antialiasing needed)."""
    torch.manual_seed(0)
    down = DownSample(4, 2)
    x = torch.randn(1, 4, 8, 12)
    with torch.no_grad():
        expected = down.down[1](F.avg_pool2d(x, 2))
        torch.testing.assert_close(down(x), expected, atol=1e-6, rtol=1e-6)
    assert down(x).shape == (1, 6, 4, 6)
