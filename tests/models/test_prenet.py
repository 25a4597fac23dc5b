"""PReNet family: the authors' names and shapes, the stage computation checked by hand, every
released checkpoint loading strict from PyTorch's legacy serialization, and real Rain100L
scores against values computed with the authors' own classes."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from torch import nn

from dreamprune_cli.flops import count_costs
from dreamprune_cli.models import build_model, get_model_info
from dreamprune_cli.models.checkpoint import read_checkpoint
from dreamprune_cli.models.loading import load_model
from tests.helpers import REALDATA_DIR, realdata

FAMILY = ("prenet", "prenet_r", "prn", "prn_r", "prenet_lstm", "prenet_gru", "prenet_x")

# released checkpoint (under csdwren+PReNet/logs) -> (registry name, variant)
CHECKPOINTS = {
    **{f"{s}/{m}/net_latest.pth": (n, "official")
       for s in ("Rain100L", "Rain100H", "Rain1400")
       for m, n in (("PReNet6", "prenet"), ("PReNet6_r", "prenet_r"), ("PRN6", "prn"),
                    ("PRN6_r", "prn_r"))},
    "real/PReNet1.pth": ("prenet", "official"),
    "real/PReNet2.pth": ("prenet", "official"),
    "Ablation/PReNet5_LSTM/net_latest.pth": ("prenet_lstm", "t5"),
    "Ablation/PReNet6_LSTM/net_latest.pth": ("prenet_lstm", "official"),
    "Ablation/PReNet7_LSTM/net_latest.pth": ("prenet_lstm", "t7"),
    "Ablation/PReNet6_RecSSIM/net_latest.pth": ("prenet_lstm", "official"),
    "Ablation/PReNet6_GRU/net_latest.pth": ("prenet_gru", "official"),
    "Ablation/PReNet6_x/net_latest.pth": ("prenet_x", "official"),
}

# Parameter counts of the authors' classes (32 channels, 5 blocks), from their state dicts.
OFFICIAL_PARAMS = {"prenet": 168963, "prenet_r": 94979, "prn": 95107, "prn_r": 21123}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, count", sorted(OFFICIAL_PARAMS.items()))
def test_official_parameter_counts(name: str, count: int) -> None:
    assert _params(build_model(name)) == count


def test_names_match_the_released_state_dicts() -> None:
    """Names and shapes equal the listing of the authors' files (shared/realdata)."""
    for listing, name in (("prenet6_rain100L", "prenet"), ("prenet6r_rain100L", "prenet_r"),
                          ("prn6_rain100L", "prn"), ("prn6r_rain100L", "prn_r")):
        data = json.loads(realdata(f"state_dicts/{listing}.json").read_text())
        expected = {k: tuple(shape) for k, shape in data["parameters"]}
        actual = {k: tuple(v.shape) for k, v in build_model(name).state_dict().items()}
        assert actual == expected, name


def test_registry_facts() -> None:
    for name in FAMILY:
        info = get_model_info(name)
        assert info.task == "derain" and info.metric_space == "y"
        assert info.output_index == 0 and "last stage" in info.description
        assert info.quantization == "truncate" and info.ssim_variant == "basicsr"
        assert set(info.variants) == {"official", "t5", "t7", "tiny"}


@pytest.mark.parametrize("name", FAMILY)
def test_forward_returns_every_stage(name: str) -> None:
    model = build_model(name, "tiny", stages=4).eval()
    x = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        last, stages = model(x)
    assert len(stages) == 4 and last is stages[-1] and last.shape == x.shape


def test_recursive_variants_share_one_block() -> None:
    model = build_model("prn_r", "tiny", blocks=3)
    assert [n for n, _ in model.named_children() if n.startswith("res_conv")] == ["res_conv1"]
    calls = []
    model.res_conv1.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        model(torch.rand(1, 3, 8, 8))
    assert len(calls) == 3 * 3  # blocks x stages


def _zero_(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def test_zero_weights_by_hand() -> None:
    """With all weights zero every stage predicts 0: PReNet/PRN return the input (residual),
    the LSTM ablation returns 0."""
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        assert torch.equal(_zero_(build_model("prenet", "tiny"))(x)[0], x)
        assert torch.equal(_zero_(build_model("prn_r", "tiny"))(x)[0], x)
        assert torch.equal(_zero_(build_model("prenet_lstm", "tiny"))(x)[0], torch.zeros_like(x))


def test_lstm_step_by_hand() -> None:
    """One stage, no blocks, 1 channel, 1x1 kernels in effect: checks the gate wiring
    ``c = f c + i g``, ``h = o tanh(c)``, output ``conv(h) + input``."""
    model = build_model("prenet", stages=1, channels=1, blocks=0)
    _zero_(model)
    with torch.no_grad():
        model.conv0[0].bias.fill_(1.0)          # x = relu(1) = 1 everywhere
        for gate, bias in (("conv_i", 0.5), ("conv_f", 0.0), ("conv_g", 0.25), ("conv_o", -1.0)):
            getattr(model, gate)[0].bias.fill_(bias)
        model.conv[0].weight[:, 0, 1, 1] = 2.0  # centre tap: out = 2 h + input
    x = torch.rand(1, 3, 5, 5)
    with torch.no_grad():
        out, _ = model(x)
    i, g, o = torch.sigmoid(torch.tensor(0.5)), torch.tanh(torch.tensor(0.25)), \
        torch.sigmoid(torch.tensor(-1.0))
    h = o * torch.tanh(i * g)  # c starts at 0, so f c vanishes
    assert torch.allclose(out, x + 2 * h, atol=1e-6)


def test_gru_step_by_hand() -> None:
    """``h = (1 - z) h + z g`` with ``g = tanh(conv_g(cat(b h, x)))``; from h = 0: h = z g."""
    model = build_model("prenet_gru", stages=1, channels=1, blocks=0)
    _zero_(model)
    with torch.no_grad():
        model.conv0[0].bias.fill_(1.0)
        model.conv_z[0].bias.fill_(0.3)
        model.conv_g[0].weight[0, 1, 1, 1] = 0.7  # acts on x (second half of the input)
        model.conv[0].weight[:, 0, 1, 1] = 1.0
    x = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        out, _ = model(x)
    h = torch.sigmoid(torch.tensor(0.3)) * torch.tanh(torch.tensor(0.7))
    assert torch.allclose(out[:, :, 1:-1, 1:-1], torch.full_like(out[:, :, 1:-1, 1:-1], h),
                          atol=1e-6)  # no input residual in the GRU ablation


def test_official_macs_by_hand() -> None:
    """Convolution MACs at 3x256x256, per stage: conv0 6*32*9, four LSTM gates 64*32*9,
    ten block convs 32*32*9, output conv 32*3*9; six stages. Our counter's convolution
    rows (bias adds, one per output element and call, removed) must equal it."""
    pixels = 256 * 256
    prn = 6 * 32 * 9 + 10 * 32 * 32 * 9 + 32 * 3 * 9
    per_stage = {"prenet": prn + 4 * 64 * 32 * 9, "prenet_r": prn + 4 * 64 * 32 * 9,
                 "prn": prn, "prn_r": prn}
    for name, macs in per_stage.items():
        with torch.device("meta"):
            network = build_model(name)
        modules = dict(network.named_modules())
        report = count_costs(network, (3, 256, 256))
        conv_macs = sum(layer.macs_dense - modules[layer.name].out_channels * pixels * layer.calls
                        for layer in report.layers if layer.prunable)
        assert conv_macs == 6 * macs * pixels, name


@pytest.mark.parametrize("relative", sorted(CHECKPOINTS))
def test_every_released_checkpoint_loads_strict(relative: str) -> None:
    path = realdata(f"csdwren+PReNet/logs/{relative}")
    assert not zipfile.is_zipfile(path)  # PyTorch's legacy (pre-zip) serialization
    checkpoint = read_checkpoint(path)  # torch.load(weights_only=True) inside
    name, variant = CHECKPOINTS[relative]
    model = load_model(name, variant, path, strict=True)
    assert set(model.network.state_dict()) == set(checkpoint.state_dict)


def test_all_released_checkpoints_are_covered() -> None:
    logs = realdata("csdwren+PReNet/logs")
    found = {str(p.relative_to(logs)) for p in logs.rglob("*.pth")}
    assert found == set(CHECKPOINTS)


# Authors' classes (networks.py @ 6d908d1, CPU, float32) on rows 0:64, cols 0:96 of Rain100L
# norain-1, written as test_PRN_r.py writes (np.uint8(255 * clamp(out))), scored with numpy
# (MATLAB's studio-range Y, Wang's SSIM over the valid window); computed outside the project.
CROP_REFERENCE = {"prn_r": ("Rain100L/PRN6_r", 38.135634, 0.978320),
                  "prenet_r": ("Rain100L/PReNet6_r", 40.014398, 0.982767)}


@pytest.mark.parametrize("name", sorted(CROP_REFERENCE))
def test_real_rain100l_crop_scores(name: str, tmp_path, runner) -> None:
    from PIL import Image

    from dreamprune_cli.cli import app

    weights_dir, expected_psnr, expected_ssim = CROP_REFERENCE[name]
    weights = realdata(f"csdwren+PReNet/logs/{weights_dir}/net_latest.pth")
    small = realdata("KaneWANG0816+RGR/rain100L/test/small")
    for folder in ("rain", "norain"):
        (tmp_path / folder).mkdir()
        with Image.open(small / folder / "norain-1.png") as image:
            image.convert("RGB").crop((0, 0, 96, 64)).save(tmp_path / folder / "norain-1.png")
    result = runner.invoke(app, ["--json", "evaluate", "--model", name, "--weights",
                                 str(weights), "--input-dir", str(tmp_path / "rain"),
                                 "--target-dir", str(tmp_path / "norain")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["metric_space"] == "y"
    assert report["psnr"] == pytest.approx(expected_psnr, abs=1e-4)
    assert report["ssim"] == pytest.approx(expected_ssim, abs=1e-5)


def test_realdata_location_is_stated() -> None:
    assert REALDATA_DIR.name == "realdata"
