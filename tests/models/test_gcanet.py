"""GCANet: the authors' names and shapes, their input convention (edge map, 0-255, -128)
checked by hand, both released checkpoints loading strict, MACs against PyTorch's counter,
and a real SOTS crop scored against the authors' own class."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dreamprune_cli.flops import count_costs
from dreamprune_cli.models import build_model, get_model_info
from dreamprune_cli.models.gcanet import ShareSepConv, edge_map, encode_input
from dreamprune_cli.models.loading import load_model
from tests.helpers import realdata

RELEASED = {"gcanet": "wacv_gcanet_dehaze", "gcanet_derain": "wacv_gcanet_derain"}


@pytest.mark.parametrize("name, listing", [("gcanet", "gcanet_dehaze"),
                                           ("gcanet_derain", "gcanet_derain")])
def test_names_match_the_released_state_dicts(name: str, listing: str) -> None:
    data = json.loads(realdata(f"state_dicts/{listing}.json").read_text())
    expected = {k: tuple(shape) for k, shape in data["parameters"]}
    actual = {k: tuple(v.shape) for k, v in build_model(name).state_dict().items()}
    assert actual == expected


@pytest.mark.parametrize("name", sorted(RELEASED))
def test_released_checkpoints_load_strict(name: str) -> None:
    path = realdata(f"cddlyf+GCANet/models/{RELEASED[name]}.pth")
    assert not zipfile.is_zipfile(path)  # legacy serialization, read with weights_only=True
    loaded = load_model(name, "official", path, strict=True)
    assert loaded.network.only_residual is (name == "gcanet")


def test_registry_facts() -> None:
    dehaze, derain = get_model_info("gcanet"), get_model_info("gcanet_derain")
    assert (dehaze.task, dehaze.metric_space) == ("dehaze", "rgb")
    assert (derain.task, derain.metric_space) == ("derain", "y")
    for info in (dehaze, derain):
        modules = dict(build_model(info.name, "tiny").named_modules())
        assert info.size_multiple == 2 and info.output_index is None
        assert modules["conv1"].in_channels == 4 and set(info.prune_exclude) == {"conv1",
                                                                                  "deconv1"}
        assert info.input_encoder is encode_input
    assert sum(p.numel() for p in build_model("gcanet", "tiny").parameters()) < \
        0.05 * sum(p.numel() for p in build_model("gcanet").parameters())


def test_edge_map_by_hand() -> None:
    """One channel, 2x3: each pixel sums |differences| to its existing neighbours, / 4."""
    image = torch.tensor([[[[0.0, 4.0, 4.0], [8.0, 8.0, 0.0]]]])
    # horizontal diffs row0: 4, 0; row1: 0, 8. vertical diffs: 8, 4, 4.
    expected = torch.tensor([[[[4 + 8, 4 + 0 + 4, 0 + 4], [0 + 8, 0 + 8 + 4, 8 + 4]]]]) / 4
    assert torch.equal(edge_map(image), expected)
    three = image.repeat(1, 3, 1, 1)
    assert torch.allclose(edge_map(three), expected)  # averaged over channels


def test_encode_input() -> None:
    x = torch.rand(2, 3, 6, 8)
    encoded = encode_input(x)
    assert encoded.shape == (2, 4, 6, 8)
    assert torch.allclose(encoded[:, :3], x * 255 - 128)
    assert torch.allclose(encoded[:, 3:], edge_map(x * 255) - 128)


def _zeroed(name: str) -> nn.Module:
    model = build_model(name, "tiny")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def test_adapter_residual_and_direct_output() -> None:
    """A network that outputs 0: dehazing (residual) returns its input, deraining returns 0.
    Odd sizes are padded to the size multiple and cropped back."""
    x = torch.rand(1, 3, 15, 21)
    for name, expected in (("gcanet", x), ("gcanet_derain", torch.zeros_like(x))):
        adapter = _adapter(name)
        with torch.no_grad():
            assert torch.allclose(adapter(x), expected, atol=1e-6), name


def _adapter(name: str) -> nn.Module:
    from dreamprune_cli.models.adapter import RestorationAdapter

    return RestorationAdapter(_zeroed(name), get_model_info(name)).eval()


def test_share_sep_conv() -> None:
    layer = ShareSepConv(3)
    x = torch.rand(1, 5, 7, 7)
    assert torch.equal(layer(x), x)  # identity at initialisation
    with pytest.raises(ValueError, match="odd"):
        ShareSepConv(4)
    report = count_costs(nn.Sequential(layer), (5, 7, 7))
    assert report.macs == report.macs_dense == 9 * 5 * 49  # every tap per output element
    assert report.params == 9


def test_official_conv_macs_match_torch_flop_counter() -> None:
    """At 3x256x256 through the adapter: our convolution MACs (bias adds removed) equal
    FlopCounterMode's FLOPs / 2, ShareSepConv included."""
    network = build_model("gcanet").eval()
    modules = dict(network.named_modules())
    report = count_costs(network, (4, 256, 256))
    bias = {}
    handles = []
    for name, module in modules.items():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) and module.bias is not None:
            handles.append(module.register_forward_hook(
                lambda m, a, out, key=name: bias.__setitem__(key, out.numel())))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        network(torch.rand(1, 4, 256, 256))
    for handle in handles:
        handle.remove()
    conv = sum(layer.macs_dense - bias.get(layer.name, 0) for layer in report.layers
               if layer.prunable or isinstance(modules[layer.name], ShareSepConv))
    assert conv == counter.get_total_flops() // 2


# The authors' GCANet (GCANet.py, test.py @ 23846ff, CPU) on rows 0:64, cols 0:96 of SOTS
# 1400_2: (pred + img).round().clamp(0, 255), scored with numpy on RGB (Wang's SSIM, valid
# window, mean over channels); computed outside the project. A crop this small changes the
# instance-norm statistics, hence the low score: this checks equality, not quality.
CROP_REFERENCE = (15.577212, 0.800777)


def test_real_sots_crop_score(tmp_path, runner) -> None:
    from PIL import Image

    from dreamprune_cli.cli import app

    weights = realdata("cddlyf+GCANet/models/wacv_gcanet_dehaze.pth")
    sots = realdata("square-moon+haze/data/RESIDE-IN/test")
    for folder in ("hazy", "GT"):
        (tmp_path / folder).mkdir()
        with Image.open(sots / folder / "1400_2.png") as image:
            image.convert("RGB").crop((0, 0, 96, 64)).save(tmp_path / folder / "1400_2.png")
    result = runner.invoke(app, ["--json", "evaluate", "--model", "gcanet", "--weights",
                                 str(weights), "--input-dir", str(tmp_path / "hazy"),
                                 "--target-dir", str(tmp_path / "GT")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["metric_space"] == "rgb"
    assert report["psnr"] == pytest.approx(CROP_REFERENCE[0], abs=1e-4)
    assert report["ssim"] == pytest.approx(CROP_REFERENCE[1], abs=1e-5)


@pytest.mark.parametrize("name", ["gcanet", "prenet_r"])
def test_exported_file_loads_with_weights_alone(name: str, tmp_path, runner) -> None:
    """``export`` names the model and its config in the file; ``--weights`` alone then
    rebuilds the same network (here the tiny variant) with the same outputs."""
    from dreamprune_cli.cli import app

    network = build_model(name, "tiny")
    torch.save(network.state_dict(), tmp_path / "w.pth")
    out = tmp_path / "w.safetensors"
    result = runner.invoke(app, ["export", "--model", name, "--variant", "tiny", "--weights",
                                 str(tmp_path / "w.pth"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    loaded = load_model(None, weights=out)
    assert loaded.name == name and loaded.config == get_model_info(name).variants["tiny"]
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        reference = network.eval()(encode_input(x) if name == "gcanet" else x)
        rebuilt = loaded.network(encode_input(x) if name == "gcanet" else x)
    first = (lambda v: v[0]) if name == "prenet_r" else (lambda v: v)
    assert torch.equal(first(reference), first(rebuilt))
