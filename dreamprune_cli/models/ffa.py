"""FFA-Net: feature fusion attention network for single-image dehazing.

A re-implementation of the network of zhilin007/FFA-Net (``net/models/FFA.py``) whose
parameter names match the authors' checkpoints, so that their ``.pk`` files load with
``strict=True``. The network takes the hazy image normalised with the authors' mean/std and
returns ``post(features) + input``; the authors' test script uses that tensor directly as
the restored image (clamped to ``[0, 1]``).

Structure: a 3x3 head conv, ``gps`` groups of ``blocks`` residual blocks (conv-ReLU-conv with
channel and pixel attention) plus a closing conv, a learned channel-attention weighting of the
concatenated group outputs, a pixel attention, and two tail convs. ReLUs and residual additions
are out of place (the authors' are in place; the values are the same) so that forward hooks
that keep a layer's output see it unmodified.
"""

from __future__ import annotations

import torch
from torch import nn

from dreamprune_cli.models.registry import ModelInfo, register_model


def _conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """'Same' zero-padded convolution with bias, as the authors' ``default_conv``."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=True)


class PixelAttention(nn.Module):
    """Per-pixel gate ``x * sigmoid(conv(relu(conv(x))))`` shared by all channels."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = channels // reduction
        self.pa = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, padding=0, bias=True),
            nn.ReLU(),
            nn.Conv2d(hidden, 1, 1, padding=0, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.pa(x)


class ChannelAttention(nn.Module):
    """Per-channel gate computed from the global average of each channel."""

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = channels // reduction
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.ca = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, padding=0, bias=True),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1, padding=0, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.ca(self.avg_pool(x))


class FABlock(nn.Module):
    """Feature attention block: ``x + PA(CA(conv2(relu(conv1(x)) + x)))``."""

    def __init__(self, dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv1 = _conv(dim, dim, kernel_size)
        self.act1 = nn.ReLU()
        self.conv2 = _conv(dim, dim, kernel_size)
        self.calayer = ChannelAttention(dim)
        self.palayer = PixelAttention(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.act1(self.conv1(x)) + x
        res = self.palayer(self.calayer(self.conv2(res)))
        return res + x


class Group(nn.Module):
    """``blocks`` feature attention blocks and a closing conv, with a long skip."""

    def __init__(self, dim: int, blocks: int, kernel_size: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [FABlock(dim, kernel_size) for _ in range(blocks)]
        layers.append(_conv(dim, dim, kernel_size))
        self.gp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gp(x) + x


class FFA(nn.Module):
    """FFA-Net. The authors fix ``gps=3`` and ``dim=64``; both are parameters here.

    The input is the normalised hazy image; the output is ``post(...) + input``.
    """

    def __init__(self, gps: int = 3, blocks: int = 19, dim: int = 64, kernel_size: int = 3) -> None:
        super().__init__()
        if gps < 1 or blocks < 0 or dim < 16:
            raise ValueError(f"FFA needs gps >= 1, blocks >= 0 and dim >= 16, "
                             f"got gps={gps}, blocks={blocks}, dim={dim}")
        self.gps = gps
        self.dim = dim
        self.pre = nn.Sequential(_conv(3, dim, kernel_size))
        self.group_names = [f"g{i + 1}" for i in range(gps)]
        for group_name in self.group_names:
            self.add_module(group_name, Group(dim, blocks, kernel_size))
        # Fusion weights: one sigmoid gate per channel of each group's output.
        self.ca = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(dim * gps, dim // 16, 1, padding=0, bias=True),
            nn.ReLU(),
            nn.Conv2d(dim // 16, dim * gps, 1, padding=0, bias=True),
            nn.Sigmoid(),
        )
        self.palayer = PixelAttention(dim)
        self.post = nn.Sequential(_conv(dim, dim, kernel_size), _conv(dim, 3, kernel_size))

    def forward(self, x1: torch.Tensor) -> torch.Tensor:
        x = self.pre(x1)
        outs: list[torch.Tensor] = []
        for group_name in self.group_names:
            x = getattr(self, group_name)(x)
            outs.append(x)
        # One gate per channel of each group's output. torch.chunk is the authors'
        # view(-1, gps, dim, 1, 1)[:, i] (same elements, same values) in a form that channel
        # pruning can trace: the gates follow the groups' pruned widths.
        w = torch.chunk(self.ca(torch.cat(outs, dim=1)), self.gps, dim=1)
        fused = w[0] * outs[0]
        for i in range(1, self.gps):
            fused = fused + w[i] * outs[i]
        return self.post(self.palayer(fused)) + x1


def ffa(gps: int = 3, blocks: int = 19, dim: int = 64) -> nn.Module:
    """Build FFA-Net (official: ``gps=3, blocks=19, dim=64``)."""
    return FFA(gps=gps, blocks=blocks, dim=dim)


register_model(ModelInfo(
    name="ffa",
    factory=ffa,
    task="dehaze",
    description="FFA-Net feature fusion attention dehazing network (RESIDE ITS/OTS)",
    paper=("X. Qin, Z. Wang, Y. Bai, X. Xie, H. Jia: FFA-Net: Feature Fusion Attention "
           "Network for Single Image Dehazing. AAAI 2020."),
    repository="zhilin007/FFA-Net, net/models/FFA.py",
    checkpoint_format="`.pk` dict, weights under 'model' with 'module.' prefix (nn.DataParallel)",
    variants={
        "official": {"gps": 3, "blocks": 19, "dim": 64},
        "tiny": {"gps": 3, "blocks": 2, "dim": 16},
    },
    mean=(0.64, 0.6, 0.58),
    std=(0.14, 0.15, 0.152),
    channel_order="RGB",
    output_index=None,
    size_multiple=1,
    penultimate_layer="post.1",
    prune_exclude=("pre.0", "post.1"),
    checkpoint_key="model",
    checkpoint_module_prefix=True,
    metric_space="rgb",
    crop_border=0,
    input_range_note=("RGB in [0, 1] normalised with mean (0.64, 0.6, 0.58), std (0.14, 0.15, "
                      "0.152); the output (network + normalised input) is used as the image"),
))
