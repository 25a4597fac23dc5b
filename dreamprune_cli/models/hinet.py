"""HINet: two-stage U-Net with Half Instance Normalization (Chen et al., CVPRW 2021).

Re-implementation of the authors' ``HINet`` (megvii-model/HINet,
``basicsr/models/archs/hinet_arch.py``) with the same parameter names, so their BasicSR
checkpoints load with ``strict=True``, and the same arithmetic:

* stage 1: ``conv_01`` -> encoder ``down_path_1`` -> decoder ``up_path_1`` (skip connections
  through ``skip_conv_1``) -> supervised attention module ``sam12``, which also emits the
  stage-1 image;
* stage 2: ``conv_02`` fused with the SAM features by ``cat12`` -> encoder ``down_path_2``
  whose blocks add cross-stage feature fusion (CSFF) of the stage-1 encoder and decoder
  features -> decoder ``up_path_2`` -> ``last`` plus the input image.

The forward returns ``[stage1_image, stage2_image]``; the restored image is the last one.
"""

from __future__ import annotations

import torch
from torch import nn

from dreamprune_cli.models.registry import ModelInfo, register_model


class ConvBlock(nn.Module):
    """HINet's ``UNetConvBlock``: two 3x3 convs with LeakyReLU and a 1x1 residual.

    ``conv_1`` is optionally followed by half instance normalisation (HIN), the residual is
    ``identity(x)``; with ``csff`` the block adds ``csff_enc(enc) + csff_dec(dec)`` (stage-1
    encoder/decoder features); with ``downsample`` it also returns a strided 4x4 conv of its
    output, i.e. ``(down, full)``.
    """

    def __init__(self, in_ch: int, out_ch: int, relu_slope: float, downsample: bool = False,
                 csff: bool = False, hin: bool = False) -> None:
        super().__init__()
        self.identity = nn.Conv2d(in_ch, out_ch, 1, 1, 0)
        self.conv_1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1)
        self.relu_1 = nn.LeakyReLU(relu_slope)
        self.conv_2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
        self.relu_2 = nn.LeakyReLU(relu_slope)
        # The authors create the CSFF convs only for downsampling blocks.
        self.use_csff = csff and downsample
        if self.use_csff:
            self.csff_enc = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
            self.csff_dec = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
        # Half instance norm: affine InstanceNorm2d over the first half of the channels.
        self.norm = nn.InstanceNorm2d(out_ch // 2, affine=True) if hin else None
        self.downsample = nn.Conv2d(out_ch, out_ch, 4, 2, 1, bias=False) if downsample else None

    def forward(self, x: torch.Tensor, enc: torch.Tensor | None = None,
                dec: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        out = self.conv_1(x)
        if self.norm is not None:
            # The authors split with torch.chunk(out, 2); equal for even channel counts.
            n = self.norm.num_features
            out = torch.cat([self.norm(out[:, :n]), out[:, n:]], dim=1)
        out = self.relu_1(out)
        out = self.relu_2(self.conv_2(out))
        out = out + self.identity(x)
        if enc is not None and dec is not None:
            if not self.use_csff:
                raise ValueError("this block has no cross-stage fusion convolutions")
            out = out + self.csff_enc(enc) + self.csff_dec(dec)
        if self.downsample is not None:
            return self.downsample(out), out
        return out


class UpBlock(nn.Module):
    """Decoder step: 2x transposed conv, concatenation with the skip, then a ``ConvBlock``."""

    def __init__(self, in_ch: int, out_ch: int, relu_slope: float) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, kernel_size=2, stride=2, bias=True)
        self.conv_block = ConvBlock(in_ch, out_ch, relu_slope)

    def forward(self, x: torch.Tensor, bridge: torch.Tensor) -> torch.Tensor:
        return self.conv_block(torch.cat([self.up(x), bridge], dim=1))


class SAM(nn.Module):
    """Supervised attention module: emits the stage-1 image and image-gated features.

    ``img = conv2(x) + x_img``; features ``x + conv1(x) * sigmoid(conv3(img))``.
    """

    def __init__(self, channels: int, in_ch: int = 3, kernel_size: int = 3) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=pad)
        self.conv2 = nn.Conv2d(channels, in_ch, kernel_size, padding=pad)
        self.conv3 = nn.Conv2d(in_ch, channels, kernel_size, padding=pad)

    def forward(self, x: torch.Tensor, x_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.conv2(x) + x_img
        features = self.conv1(x) * torch.sigmoid(self.conv3(img)) + x
        return features, img


class HINet(nn.Module):
    """Two-stage HINet; ``forward(x)`` returns ``[stage1_image, stage2_image]``.

    Args:
        in_chn: image channels.
        wf: width of the first level; level ``i`` has ``wf * 2**i`` channels.
        depth: encoder levels (``depth - 1`` downsamplings, so sizes must be multiples of
            ``2**(depth - 1)``).
        relu_slope: LeakyReLU negative slope in every conv block.
        hin_position_left, hin_position_right: encoder levels (inclusive) that use HIN.
    """

    def __init__(self, in_chn: int = 3, wf: int = 64, depth: int = 5, relu_slope: float = 0.2,
                 hin_position_left: int = 0, hin_position_right: int = 4) -> None:
        super().__init__()
        self.depth = depth
        widths = [wf * 2**i for i in range(depth)]
        # Registration order follows the authors' (state_dict key order).
        self.down_path_1 = nn.ModuleList()
        self.down_path_2 = nn.ModuleList()
        self.conv_01 = nn.Conv2d(in_chn, wf, 3, 1, 1)
        self.conv_02 = nn.Conv2d(in_chn, wf, 3, 1, 1)
        prev = wf
        for i, width in enumerate(widths):
            hin = hin_position_left <= i <= hin_position_right
            down = i + 1 < depth
            self.down_path_1.append(ConvBlock(prev, width, relu_slope, down, hin=hin))
            self.down_path_2.append(ConvBlock(prev, width, relu_slope, down, csff=down, hin=hin))
            prev = width

        self.up_path_1 = nn.ModuleList()
        self.up_path_2 = nn.ModuleList()
        self.skip_conv_1 = nn.ModuleList()
        self.skip_conv_2 = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.up_path_1.append(UpBlock(prev, width, relu_slope))
            self.up_path_2.append(UpBlock(prev, width, relu_slope))
            self.skip_conv_1.append(nn.Conv2d(width, width, 3, 1, 1))
            self.skip_conv_2.append(nn.Conv2d(width, width, 3, 1, 1))
            prev = width

        self.sam12 = SAM(wf, in_chn)
        self.cat12 = nn.Conv2d(2 * wf, wf, 1, 1, 0)
        self.last = nn.Conv2d(wf, in_chn, 3, 1, 1)

    @staticmethod
    def _encode(blocks: nn.ModuleList, x: torch.Tensor, encs: list[torch.Tensor] | None = None,
                decs: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run an encoder; returns the bottleneck and the full-resolution skip features.

        With ``encs``/``decs`` (stage 2), block ``i`` fuses ``encs[i]`` and ``decs[-i-1]``.
        """
        skips: list[torch.Tensor] = []
        for i, block in enumerate(blocks):
            if i + 1 == len(blocks):
                x = block(x)
            elif encs is None or decs is None:
                x, skip = block(x)
                skips.append(skip)
            else:
                x, skip = block(x, encs[i], decs[-i - 1])
                skips.append(skip)
        return x, skips

    @staticmethod
    def _decode(blocks: nn.ModuleList, skip_convs: nn.ModuleList, x: torch.Tensor,
                skips: list[torch.Tensor]) -> list[torch.Tensor]:
        """Run a decoder from the coarsest level up; returns every level's output."""
        outs: list[torch.Tensor] = []
        for i, (block, skip_conv) in enumerate(zip(blocks, skip_convs)):
            x = block(x, skip_conv(skips[-i - 1]))
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        image = x
        # Stage 1.
        bottom, encs = self._encode(self.down_path_1, self.conv_01(image))
        decs = self._decode(self.up_path_1, self.skip_conv_1, bottom, encs)
        sam_feature, out_1 = self.sam12(decs[-1] if decs else bottom, image)
        # Stage 2, fed by the SAM features and fused with the stage-1 encoder/decoder.
        x2 = self.cat12(torch.cat([self.conv_02(image), sam_feature], dim=1))
        bottom, skips = self._encode(self.down_path_2, x2, encs, decs)
        outs = self._decode(self.up_path_2, self.skip_conv_2, bottom, skips)
        x2 = outs[-1] if outs else bottom
        out_2 = self.last(x2) + image
        return [out_1, out_2]


def hinet(in_chn: int = 3, wf: int = 64, depth: int = 5, relu_slope: float = 0.2,
          hin_position_left: int = 0, hin_position_right: int = 4) -> HINet:
    """Build :class:`HINet` with the authors' constructor arguments."""
    return HINet(in_chn=in_chn, wf=wf, depth=depth, relu_slope=relu_slope,
                 hin_position_left=hin_position_left, hin_position_right=hin_position_right)


register_model(ModelInfo(
    name="hinet",
    factory=hinet,
    task="derain",
    description="HINet: two-stage U-Net with half instance normalization (Rain13k)",
    paper=("L. Chen, X. Lu, J. Zhang, X. Chu, C. Chen. HINet: Half Instance Normalization "
           "Network for Image Restoration. CVPR Workshops (NTIRE), 2021."),
    repository="megvii-model/HINet, basicsr/models/archs/hinet_arch.py",
    checkpoint_format="BasicSR `.pth`, weights under 'params'",
    variants={
        # options/test/Rain13k/*.yml (relu_slope and depth at the class defaults).
        "official": {"in_chn": 3, "wf": 64, "depth": 5, "relu_slope": 0.2,
                     "hin_position_left": 0, "hin_position_right": 4},
        # ~0.54 M parameters (0.6 %), ~3.0 GMACs at 3x256x256; HIN on every encoder level.
        "tiny": {"in_chn": 3, "wf": 10, "depth": 4, "relu_slope": 0.2,
                 "hin_position_left": 0, "hin_position_right": 3},
    },
    mean=None,
    std=None,
    channel_order="RGB",
    output_index=-1,
    size_multiple=16,  # 2**(depth - 1) at the official depth 5; covers smaller depths too
    penultimate_layer="last",
    # Convs reading an image (input, or the stage-1 image in SAM) or writing one.
    prune_exclude=("conv_01", "conv_02", "sam12.conv2", "sam12.conv3", "last"),
    checkpoint_key="params",
    checkpoint_module_prefix=False,
    metric_space="y",
    crop_border=0,
    input_range_note="RGB in [0, 1], no normalisation",
))
