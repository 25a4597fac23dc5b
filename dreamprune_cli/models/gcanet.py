"""GCANet: gated context aggregation network for dehazing and deraining.

A re-implementation of ``GCANet`` of cddlyf/GCANet (``GCANet.py`` @ 23846ff) whose parameter
names match the authors' ``wacv_gcanet_dehaze.pth`` / ``wacv_gcanet_derain.pth`` (bare state
dicts), so both load with ``strict=True``.

Architecture (widths are parameters, the defaults are official):

* encoder: three 3x3 convs (no bias) with affine instance norm and ReLU, the third of
  stride 2;
* six smoothed dilated residual blocks (dilation 2, 2, 2, 4, 4, 4), each conv preceded by a
  ``ShareSepConv``: a ``(2d - 1)``-square depthwise filter with one kernel shared by every
  channel, initialised to the identity (the "smoothed dilated convolution" of the paper), and
  one plain residual block;
* gated fusion: a 3x3 conv on ``cat(y1, y2, y3)`` (encoder output, 4th block, last block)
  gives three one-channel gates, ``gated = y1 g0 + y2 g1 + y3 g2``;
* decoder: 4x4 stride-2 transposed conv, a 3x3 conv (both with instance norm and ReLU) and a
  1x1 conv to 3 channels; followed by ReLU unless ``only_residual``.

Input convention of the authors' ``test.py`` (applied by :func:`encode_input` and
:func:`decode_output`, so a user passes RGB [0, 1] like for every other model): the RGB image
on the 0-255 scale concatenated with its edge map (:func:`edge_map`, their
``utils.edge_compute``), minus 128. With ``only_residual=True`` (dehazing) the network
predicts a residual that is added to the 0-255 image; otherwise (deraining) its output is the
0-255 image itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dreamprune_cli.models.registry import ModelInfo, register_model


def edge_map(image: torch.Tensor) -> torch.Tensor:
    """GCANet's edge map of ``(N, C, H, W)`` images: ``(N, 1, H, W)``, same scale as the input.

    Per pixel, the absolute differences to its left, right, upper and lower neighbours that
    exist (missing ones count 0), summed, averaged over channels and divided by 4; the
    authors' ``utils.edge_compute`` on a batch, in the same order of operations.
    """
    diff_x = (image[..., :, 1:] - image[..., :, :-1]).abs()
    diff_y = (image[..., 1:, :] - image[..., :-1, :]).abs()
    edges = (F.pad(diff_x, (1, 0)) + F.pad(diff_x, (0, 1))
             + F.pad(diff_y, (0, 0, 1, 0)) + F.pad(diff_y, (0, 0, 0, 1)))
    return edges.sum(dim=1, keepdim=True) / image.shape[1] / 4


def encode_input(image: torch.Tensor) -> torch.Tensor:
    """RGB ``(N, 3, H, W)`` in [0, 1] -> GCANet's input ``(N, 4, H, W)``:
    ``cat(255 x, edge_map(255 x)) - 128`` (the authors' ``test.py``)."""
    scaled = image * 255.0
    return torch.cat((scaled, edge_map(scaled)), dim=1) - 128.0


def decode_output(output: torch.Tensor, image: torch.Tensor, network: nn.Module) -> torch.Tensor:
    """GCANet's output (0-255 scale) -> RGB on the [0, 1] scale (unclamped).

    ``only_residual`` networks (dehazing) predict a residual added to the input ``image``
    (RGB in [0, 1]); the others (deraining) predict the image itself.
    """
    if getattr(network, "only_residual", False):
        return output / 255.0 + image
    return output / 255.0


class ShareSepConv(nn.Module):
    """Depthwise ``k x k`` convolution whose one kernel ``weight (1, 1, k, k)`` is shared by
    every channel (zero padding ``(k - 1) / 2``, no bias); identity at initialisation.

    Output channel ``i`` is computed from input channel ``i`` alone with a kernel that has no
    channel dimension, so the layer follows any channel pruning unchanged
    (``preserves_channels``, read by :mod:`dreamprune_cli.prune.channel.tracing`).

    Raises:
        ValueError: even ``kernel_size``.
    """

    preserves_channels = True

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"ShareSepConv needs an odd kernel size, got {kernel_size}")
        self.kernel_size = kernel_size
        weight = torch.zeros(1, 1, kernel_size, kernel_size)
        weight[0, 0, kernel_size // 2, kernel_size // 2] = 1.0
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        kernel = self.weight.expand(channels, 1, self.kernel_size, self.kernel_size)
        return F.conv2d(x, kernel.contiguous(), None, 1, self.kernel_size // 2, 1, channels)

    def count_macs(self, inp: torch.Tensor, out: torch.Tensor) -> int:
        """MACs of one call (see :mod:`dreamprune_cli.flops`): every tap of the shared
        ``k x k`` kernel once per output element (this layer is never pruned)."""
        return self.kernel_size**2 * out.numel()


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=True)


def _conv3x3(channels: int, dilation: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, 1, padding=dilation, dilation=dilation, bias=False)


class SmoothDilatedResidualBlock(nn.Module):
    """``relu(x + norm(conv(sep(relu(norm(conv(sep(x)))))))`` with dilated 3x3 convs."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.pre_conv1 = ShareSepConv(2 * dilation - 1)
        self.conv1 = _conv3x3(channels, dilation)
        self.norm1 = _norm(channels)
        self.pre_conv2 = ShareSepConv(2 * dilation - 1)
        self.conv2 = _conv3x3(channels, dilation)
        self.norm2 = _norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(self.pre_conv1(x))))
        y = self.norm2(self.conv2(self.pre_conv2(y)))
        return F.relu(x + y)


class ResidualBlock(nn.Module):
    """``relu(x + norm(conv(relu(norm(conv(x))))))`` with plain 3x3 convs."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(channels, 1)
        self.norm1 = _norm(channels)
        self.conv2 = _conv3x3(channels, 1)
        self.norm2 = _norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(x + y)


class GCANet(nn.Module):
    """The GCANet network on its own input convention (see the module docstring).

    Args:
        in_channels: input channels (official 4: RGB + edge map).
        out_channels: output channels (official 3).
        width: feature width (official 64).
        only_residual: the output is a residual to add to the input (dehazing, official
            ``True``); ``False`` ends with a ReLU and outputs the image (deraining).

    Shape:
        ``(N, in_channels, H, W)`` with even H, W -> ``(N, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int = 4, out_channels: int = 3, width: int = 64,
                 only_residual: bool = True) -> None:
        super().__init__()
        if in_channels < 1 or out_channels < 1 or width < 1:
            raise ValueError(f"GCANet needs positive sizes, got in_channels={in_channels}, "
                             f"out_channels={out_channels}, width={width}")
        w = width
        self.conv1 = nn.Conv2d(in_channels, w, 3, 1, 1, bias=False)
        self.norm1 = _norm(w)
        self.conv2 = nn.Conv2d(w, w, 3, 1, 1, bias=False)
        self.norm2 = _norm(w)
        self.conv3 = nn.Conv2d(w, w, 3, 2, 1, bias=False)
        self.norm3 = _norm(w)
        self.res1 = SmoothDilatedResidualBlock(w, dilation=2)
        self.res2 = SmoothDilatedResidualBlock(w, dilation=2)
        self.res3 = SmoothDilatedResidualBlock(w, dilation=2)
        self.res4 = SmoothDilatedResidualBlock(w, dilation=4)
        self.res5 = SmoothDilatedResidualBlock(w, dilation=4)
        self.res6 = SmoothDilatedResidualBlock(w, dilation=4)
        self.res7 = ResidualBlock(w)
        self.gate = nn.Conv2d(3 * w, 3, 3, 1, 1, bias=True)
        self.deconv3 = nn.ConvTranspose2d(w, w, 4, 2, 1)
        self.norm4 = _norm(w)
        self.deconv2 = nn.Conv2d(w, w, 3, 1, 1)
        self.norm5 = _norm(w)
        self.deconv1 = nn.Conv2d(w, out_channels, 1)
        self.only_residual = only_residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        y1 = F.relu(self.norm3(self.conv3(y)))
        y = self.res3(self.res2(self.res1(y1)))
        y2 = self.res4(y)
        y3 = self.res7(self.res6(self.res5(y2)))
        gates = self.gate(torch.cat((y1, y2, y3), dim=1))
        gated = y1 * gates[:, 0:1] + y2 * gates[:, 1:2] + y3 * gates[:, 2:3]
        y = F.relu(self.norm4(self.deconv3(gated)))
        y = F.relu(self.norm5(self.deconv2(y)))
        y = self.deconv1(y)
        return y if self.only_residual else F.relu(y)


def gcanet(in_channels: int = 4, out_channels: int = 3, width: int = 64,
           only_residual: bool = True) -> nn.Module:
    """Build GCANet; the defaults are the authors' ``GCANet(in_c=4, out_c=3,
    only_residual=True)`` (dehazing)."""
    return GCANet(in_channels=in_channels, out_channels=out_channels, width=width,
                  only_residual=only_residual)


_PAPER = ("D. Chen, M. He, Q. Fan, J. Liao, L. Zhang, D. Hou, L. Yuan, G. Hua: Gated "
          "Context Aggregation Network for Image Dehazing and Deraining. WACV 2019.")
_REPOSITORY = ("cddlyf/GCANet, GCANet.py, test.py, utils.py (no licence file; the README "
               "says research use only)")
_CHECKPOINT = "`.pth`, a bare state dict in PyTorch's legacy (pre-zip) serialization"
_INPUT_NOTE = ("RGB in [0, 1]; the network sees cat(255 x, edge map) - 128 "
               "(the authors' test.py)")

for _name, _task, _residual, _file in (
        ("gcanet", "dehaze", True, "models/wacv_gcanet_dehaze.pth"),
        ("gcanet_derain", "derain", False, "models/wacv_gcanet_derain.pth")):
    register_model(ModelInfo(
        name=_name,
        factory=gcanet,
        task=_task,  # type: ignore[arg-type]
        description=(f"GCANet gated context aggregation, {_task} configuration "
                     f"({'residual added to the input' if _residual else 'direct output'})"),
        paper=_PAPER,
        repository=_REPOSITORY,
        checkpoint_format=f"{_CHECKPOINT} ({_file})",
        variants={
            "official": {"in_channels": 4, "out_channels": 3, "width": 64,
                         "only_residual": _residual},
            "tiny": {"in_channels": 4, "out_channels": 3, "width": 8,
                     "only_residual": _residual},
        },
        output_index=None,
        size_multiple=2,
        penultimate_layer="deconv1",
        prune_exclude=("conv1", "deconv1"),
        checkpoint_key=None,
        metric_space="rgb" if _task == "dehaze" else "y",
        crop_border=0,
        input_encoder=encode_input,
        output_decoder=decode_output,
        input_range_note=_INPUT_NOTE + ("; output + input" if _residual else "; direct output"),
    ))
