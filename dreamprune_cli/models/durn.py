"""DuRN: dual residual networks for rain-streak (DuRN-S) and raindrop (DuRN-S-P) removal.

A re-implementation of ``pietorch/DuRN_S.py`` and ``pietorch/DuRN_S_P.py`` of
liu-vis/DualResidualNetworks whose parameter and buffer names match the authors' checkpoints,
so that their bare ``.pt`` state dicts load with ``strict=True``.

Both networks stack *dual residual blocks* (DuRBs). A block receives the main stream ``x`` and
a second residual stream ``res``; it runs a plain residual unit on ``x``, then a first paired
operation ``T1`` (a possibly dilated large-kernel conv + BN) whose output is added to ``res``,
passed through ReLU and becomes the new ``res``; then a second paired operation ``T2``
(an optional SE-ResNet block, a conv + BN) whose output is added back to the block input::

    y   = relu(bn2(conv2(relu(bn1(conv1(x)))) + x))
    res = relu(bn_up(up_conv(y)) + res)
    x   = relu(bn_down(down_conv(se(res))) + x)

DuRN-S (rain streaks) works at full resolution with reflection-padded convs and returns
``tanh(conv4(...)) + input``. DuRN-S-P (raindrops) downsamples by 4, runs DuRB-S blocks (with
SE) then DuRB-P blocks (without SE, with the second stream restarted from ``x``), upsamples
with transposed convs and returns ``input - tanh(end_conv(...))``. All normalisation layers
are BatchNorm2d with PyTorch defaults (affine, eps 1e-5, momentum 0.1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dreamprune_cli.models.registry import ModelInfo, register_model

_PAPER = ("X. Liu, M. Suganuma, Z. Sun, T. Okatani: Dual Residual Networks Leveraging the "
          "Potential of Paired Operations for Image Restoration. CVPR 2019.")


# --------------------------------------------------------------------------- building blocks
class ConvLayer(nn.Module):
    """Stride-1 'same' convolution with bias, padded by reflection (the authors' ``ConvLayer``).

    ``zero_pad_dilated`` reproduces DuRN-S-P's variant, where a *dilated* conv is zero-padded
    inside ``nn.Conv2d`` instead of reflection-padded (the authors pad by ``dilation``, which
    equals ``dilation * (k - 1) // 2`` for their 3x3 kernels; the general form is used here).
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, dilation: int = 1,
                 zero_pad_dilated: bool = False) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"ConvLayer needs an odd kernel size, got {kernel_size}")
        padding = dilation * (kernel_size - 1) // 2
        if zero_pad_dilated and dilation > 1:
            self.reflection_pad: nn.Module = nn.Identity()
            self.conv2d = nn.Conv2d(in_dim, out_dim, kernel_size, 1, padding=padding,
                                    dilation=dilation)
        else:
            self.reflection_pad = nn.ReflectionPad2d(padding)
            self.conv2d = nn.Conv2d(in_dim, out_dim, kernel_size, 1, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.reflection_pad(x))


class FeatNorm(nn.Module):
    """BatchNorm2d wrapped as ``.norm`` (the checkpoints name it ``<layer>.norm.*``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


class SqueezeExcite(nn.Module):
    """Channel gate ``x * sigmoid(fc2(relu(fc1(avgpool(x)))))`` with ``hidden`` units."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        gate = self.fc(self.avg_pool(x).view(b, c)).view(b, c, 1, 1)
        return x * gate


class SEResBlock(nn.Module):
    """SE-ResNet basic block with BatchNorm: ``relu(se(bn2(conv2(relu(bn1(conv1(x)))))) + x)``.

    The two 3x3 convs are zero-padded and bias-free, as in the authors' ``SEBasicBlock``.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(dim, dim, 3, 1, padding=1, bias=False)
        self.conv2 = nn.Conv2d(dim, dim, 3, 1, padding=1, bias=False)
        self.se = SqueezeExcite(dim, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.bn1 = nn.BatchNorm2d(dim)
        self.bn2 = nn.BatchNorm2d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + x)


class DualResidualBlock(nn.Module):
    """One DuRB: a residual unit, then ``T1`` (conv+BN) and ``T2`` ([SE block +] conv+BN).

    ``se_hidden=None`` gives DuRB-P (no SE block in ``T2``); otherwise DuRB-S. ``T1`` is a
    ``up_kernel`` conv with ``dilation``; ``T2``'s conv has ``down_kernel`` and no dilation.
    """

    def __init__(self, dim: int, up_kernel: int, down_kernel: int, dilation: int = 1,
                 se_hidden: int | None = None, zero_pad_dilated: bool = False) -> None:
        super().__init__()
        self.conv1 = ConvLayer(dim, dim, 3)
        self.norm1 = FeatNorm(dim)
        self.conv2 = ConvLayer(dim, dim, 3)
        self.norm2 = FeatNorm(dim)
        # T1: conv + BN; its output joins the second residual stream.
        self.up_conv = ConvLayer(dim, dim, up_kernel, dilation=dilation,
                                 zero_pad_dilated=zero_pad_dilated)
        self.up_norm = FeatNorm(dim)
        # T2: (SE-ResNet block +) conv + BN; its output joins the block input.
        self.se: nn.Module = nn.Identity() if se_hidden is None else SEResBlock(dim, se_hidden)
        self.down_conv = ConvLayer(dim, dim, down_kernel)
        self.down_norm = FeatNorm(dim)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, res: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_in = x
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y) + x_in))
        res = self.relu(self.up_norm(self.up_conv(y)) + res)
        y = self.relu(self.down_norm(self.down_conv(self.se(res))) + x_in)
        return y, res


def _block_specs(specs: Sequence[Sequence[int]], size: int, what: str) -> list[tuple[int, ...]]:
    """Validate a list of integer tuples of length ``size`` (accepts lists from configs)."""
    out = [tuple(int(v) for v in spec) for spec in specs]
    for spec in out:
        if len(spec) != size or min(spec) < 1:
            raise ValueError(f"{what}: each entry needs {size} positive integers, got {spec}")
    return out


# --------------------------------------------------------------------------- DuRN-S
class DuRNS(nn.Module):
    """DuRN-S for rain streaks: full-resolution stem, DuRB-S blocks, ``tanh`` head + input.

    ``blocks`` holds one ``(up_kernel, down_kernel, dilation)`` per DuRB-S; the authors'
    network has six (``(5,3,1), (7,5,1), (7,5,2), (11,7,2), (11,5,1), (11,7,3)``), width 64
    and SE hidden size ``width // 2``. Input: RGB in [0, 1]; output: the derained image.
    """

    def __init__(self, width: int = 64,
                 blocks: Sequence[Sequence[int]] = ((5, 3, 1), (7, 5, 1), (7, 5, 2),
                                                    (11, 7, 2), (11, 5, 1), (11, 7, 3)),
                 se_hidden: int | None = None) -> None:
        super().__init__()
        specs = _block_specs(blocks, 3, "DuRN-S blocks (up_kernel, down_kernel, dilation)")
        if width < 2 or not specs:
            raise ValueError(f"DuRN-S needs width >= 2 and at least one block, "
                             f"got width={width}, blocks={specs}")
        hidden = width // 2 if se_hidden is None else se_hidden
        self.conv1 = ConvLayer(3, width, 3)
        self.norm1 = FeatNorm(width)
        self.conv2 = ConvLayer(width, width, 3)
        self.norm2 = FeatNorm(width)
        self.block_names = [f"block{i + 1}" for i in range(len(specs))]
        for name, (k1, k2, dilation) in zip(self.block_names, specs):
            self.add_module(name, DualResidualBlock(width, k1, k2, dilation, se_hidden=hidden))
        self.conv3 = ConvLayer(width, width, 3)
        self.norm3 = FeatNorm(width)
        self.conv4 = ConvLayer(width, 3, 3)
        self.relu = nn.ReLU()
        self.tanh = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        res = out
        for name in self.block_names:
            out, res = getattr(self, name)(out, res)
        out = self.relu(self.norm3(self.conv3(out)))
        return self.tanh(self.conv4(out)) + x


# --------------------------------------------------------------------------- DuRN-S-P
def _upsampler(in_dim: int, out_dim: int) -> nn.Sequential:
    """x2 transposed conv, then a one-pixel top/left reflection pad and a 2x2 stride-1 average
    (a smoothing that keeps the size), then ReLU: the authors' ``deconv`` stages."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_dim, out_dim, 4, 2, 1),
        nn.ReflectionPad2d((1, 0, 1, 0)),
        nn.AvgPool2d(2, stride=1),
        nn.ReLU(),
    )


class DuRNSP(nn.Module):
    """DuRN-S-P for raindrops: /4 stem, DuRB-S then DuRB-P blocks, x4 decoder, input - tanh.

    ``se_blocks`` holds ``(up_kernel, dilation)`` per DuRB-S (its ``T2`` conv is 3x3);
    ``res_blocks`` holds ``(up_kernel, dilation)`` per DuRB-P (its ``T2`` conv is 5x5). Blocks
    are named ``rud1, rud2, ...`` across both kinds. Dilated ``T1`` convs are zero-padded.
    ``width`` is the full-resolution width (64), ``inner`` the quarter-resolution one (128).
    Spatial sizes must be multiples of 4 so that the output matches the input size.
    Input: BGR in [0, 1] (RainDrop); output: the cleaned image.
    """

    def __init__(self, width: int = 64, inner: int = 128,
                 se_blocks: Sequence[Sequence[int]] = ((3, 12), (3, 8), (3, 6)),
                 res_blocks: Sequence[Sequence[int]] = ((3, 2), (5, 1), (3, 3), (7, 1), (3, 4),
                                                        (7, 1)),
                 se_hidden: int | None = None) -> None:
        super().__init__()
        se_specs = _block_specs(se_blocks, 2, "DuRN-S-P se_blocks (up_kernel, dilation)")
        res_specs = _block_specs(res_blocks, 2, "DuRN-S-P res_blocks (up_kernel, dilation)")
        if width < 2 or inner < 2:
            raise ValueError(f"DuRN-S-P needs width, inner >= 2, got {width}, {inner}")
        hidden = inner // 2 if se_hidden is None else se_hidden
        # Stem: note the 5x5 conv with padding 1 (the output shrinks by 2 pixels).
        self.conv1 = nn.Conv2d(3, width, kernel_size=5, stride=1, padding=1)
        self.norm1 = FeatNorm(width)
        self.conv2 = nn.Conv2d(width, inner, kernel_size=3, stride=2, padding=1)
        self.norm2 = FeatNorm(inner)
        self.conv3 = nn.Conv2d(inner, inner, kernel_size=3, stride=2, padding=1)
        self.norm3 = FeatNorm(inner)
        self.se_block_names: list[str] = []
        self.res_block_names: list[str] = []
        index = 1
        for k1, dilation in se_specs:
            name = f"rud{index}"
            self.add_module(name, DualResidualBlock(inner, k1, 3, dilation, se_hidden=hidden,
                                                    zero_pad_dilated=True))
            self.se_block_names.append(name)
            index += 1
        for k1, dilation in res_specs:
            name = f"rud{index}"
            self.add_module(name, DualResidualBlock(inner, k1, 5, dilation, se_hidden=None,
                                                    zero_pad_dilated=True))
            self.res_block_names.append(name)
            index += 1
        self.deconv1 = _upsampler(inner, inner)
        self.conv4 = ConvLayer(inner, inner, 3)
        self.norm4 = FeatNorm(inner)
        self.deconv2 = _upsampler(inner, width)
        self.end_conv = ConvLayer(width, 3, 5)
        self.relu = nn.ReLU()
        self.tanh = nn.Tanh()
        # Declared but never used by the authors; kept so that their checkpoints load strictly.
        self.prelu = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = self.relu(self.norm1(self.conv1(x)))
        x = self.relu(self.norm2(self.conv2(x)))
        x = self.relu(self.norm3(self.conv3(x)))
        res = x
        for name in self.se_block_names:
            x, res = getattr(self, name)(x, res)
        res = x  # the DuRB-P stack restarts its second stream from the main one
        for name in self.res_block_names:
            x, res = getattr(self, name)(x, res)
        x = self.deconv1(x)
        x = self.relu(self.norm4(self.conv4(x)))
        x = self.deconv2(x)
        return residual - self.tanh(self.end_conv(x))


# --------------------------------------------------------------------------- factories
def durn_s(width: int = 64,
           blocks: Sequence[Sequence[int]] = ((5, 3, 1), (7, 5, 1), (7, 5, 2), (11, 7, 2),
                                              (11, 5, 1), (11, 7, 3)),
           se_hidden: int | None = None) -> nn.Module:
    """Build DuRN-S (official: width 64, the six blocks above, SE hidden ``width // 2``)."""
    return DuRNS(width=width, blocks=blocks, se_hidden=se_hidden)


def durn_s_p(width: int = 64, inner: int = 128,
             se_blocks: Sequence[Sequence[int]] = ((3, 12), (3, 8), (3, 6)),
             res_blocks: Sequence[Sequence[int]] = ((3, 2), (5, 1), (3, 3), (7, 1), (3, 4),
                                                    (7, 1)),
             se_hidden: int | None = None) -> nn.Module:
    """Build DuRN-S-P (official: width 64, inner 128, 3 DuRB-S + 6 DuRB-P, SE hidden 64)."""
    return DuRNSP(width=width, inner=inner, se_blocks=se_blocks, res_blocks=res_blocks,
                  se_hidden=se_hidden)


register_model(ModelInfo(
    name="durn_s",
    factory=durn_s,
    task="derain",
    description="DuRN-S dual residual network for rain-streak removal (DDN / DID-MDN data)",
    paper=_PAPER,
    repository="liu-vis/DualResidualNetworks, pietorch/DuRN_S.py",
    checkpoint_format="`.pt`, a bare state dict (PyTorch 0.3.1 era)",
    variants={
        "official": {
            "width": 64,
            "blocks": ((5, 3, 1), (7, 5, 1), (7, 5, 2), (11, 7, 2), (11, 5, 1), (11, 7, 3)),
            "se_hidden": 32,
        },
        "tiny": {"width": 12, "blocks": ((5, 3, 1), (7, 5, 2), (7, 5, 3)), "se_hidden": 6},
    },
    mean=None,
    std=None,
    channel_order="RGB",
    output_index=None,
    size_multiple=1,
    penultimate_layer="conv4.conv2d",
    prune_exclude=("conv1.conv2d", "conv4.conv2d"),
    checkpoint_key=None,
    checkpoint_module_prefix=False,
    metric_space="y",
    crop_border=0,
    input_range_note=("RGB in [0, 1]; all strides 1 (any size, >= 16 px for the reflection "
                      "pads); output = tanh(...) + input"),
    depth_blocks=("block*",),  # a DuRB maps (x, res) to residual updates of both
))

register_model(ModelInfo(
    name="durn_s_p",
    factory=durn_s_p,
    task="raindrop",
    description="DuRN-S-P dual residual network for raindrop removal (RainDrop data)",
    paper=_PAPER,
    repository="liu-vis/DualResidualNetworks, pietorch/DuRN_S_P.py",
    checkpoint_format="`.pt`, a bare state dict (PyTorch 0.3.1 era; BatchNorm buffers)",
    variants={
        "official": {
            "width": 64,
            "inner": 128,
            "se_blocks": ((3, 12), (3, 8), (3, 6)),
            "res_blocks": ((3, 2), (5, 1), (3, 3), (7, 1), (3, 4), (7, 1)),
            "se_hidden": 64,
        },
        "tiny": {
            "width": 16,
            "inner": 32,
            "se_blocks": ((3, 12), (3, 6)),
            "res_blocks": ((3, 2), (5, 1), (3, 4)),
            "se_hidden": 16,
        },
    },
    mean=None,
    std=None,
    channel_order="BGR",
    output_index=None,
    size_multiple=4,
    penultimate_layer="end_conv.conv2d",
    prune_exclude=("conv1", "end_conv.conv2d"),
    checkpoint_key=None,
    checkpoint_module_prefix=False,
    metric_space="y",
    crop_border=0,
    input_range_note=("BGR in [0, 1] (read with OpenCV); sizes a multiple of 4; "
                      "output = input - tanh(...)"),
    depth_blocks=("rud*",),  # a DuRB maps (x, res) to residual updates of both
))
