"""MPRNet (Zamir et al., CVPR 2021), the deraining configuration.

A three-stage network: stage 1 is an encoder-decoder run on four quarter patches, stage 2 the
same on two half patches, stage 3 an original-resolution subnetwork (ORSNet). Supervised
attention modules (SAM) pass features between stages and produce the intermediate images;
cross-stage feature fusion (CSFF) feeds stage-1 features into stage 2 and stage-2 features into
stage 3. The forward returns ``[stage3, stage2, stage1]``; the first is the restored image.

Parameter names follow the authors' ``Deraining/MPRNet.py`` so that their checkpoints load with
``strict=True``. One detail matters for that: the authors build a single ``nn.PReLU`` and hand
the same instance to every channel-attention block, so their ``state_dict`` holds the one slope
under 55 names (``...body.1.weight``), while ``named_parameters`` lists it once. We share it the
same way.
"""

from __future__ import annotations

import torch
from torch import nn

from dreamprune_cli.models.registry import ModelInfo, register_model


def conv(in_ch: int, out_ch: int, kernel_size: int, bias: bool = False) -> nn.Conv2d:
    """A stride-1 convolution with "same" zero padding (odd kernels)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=bias)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: global mean, 1x1 down, ReLU, 1x1 up, sigmoid gate."""

    def __init__(self, channels: int, reduction: int, bias: bool) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1, bias=bias),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1, bias=bias),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class CAB(nn.Module):
    """Channel attention block: conv, shared PReLU, conv, channel attention, plus the input."""

    def __init__(self, channels: int, kernel_size: int, reduction: int, bias: bool,
                 act: nn.Module) -> None:
        super().__init__()
        self.CA = ChannelAttention(channels, reduction, bias)
        self.body = nn.Sequential(conv(channels, channels, kernel_size, bias),
                                  act,
                                  conv(channels, channels, kernel_size, bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.CA(self.body(x)) + x


def cab_stack(count: int, channels: int, kernel_size: int, reduction: int, bias: bool,
              act: nn.Module) -> list[nn.Module]:
    """``count`` channel attention blocks of equal width (all sharing ``act``)."""
    return [CAB(channels, kernel_size, reduction, bias, act) for _ in range(count)]


class SAM(nn.Module):
    """Supervised attention module: predicts a stage image and gates the features with it.

    Returns ``(features, image)`` where ``image = conv2(x) + x_img`` and the features are
    ``conv1(x) * sigmoid(conv3(image)) + x``.
    """

    def __init__(self, n_feat: int, kernel_size: int, bias: bool, img_ch: int = 3) -> None:
        super().__init__()
        self.conv1 = conv(n_feat, n_feat, kernel_size, bias)
        self.conv2 = conv(n_feat, img_ch, kernel_size, bias)
        self.conv3 = conv(img_ch, n_feat, kernel_size, bias)

    def forward(self, x: torch.Tensor, x_img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.conv2(x) + x_img
        gate = torch.sigmoid(self.conv3(img))
        return self.conv1(x) * gate + x, img


def resample_conv(in_ch: int, out_ch: int, scale: float) -> nn.Sequential:
    """Bilinear resize (align_corners=False) by ``scale``, then a bias-free 1x1 convolution."""
    return nn.Sequential(nn.Upsample(scale_factor=scale, mode="bilinear", align_corners=False),
                         nn.Conv2d(in_ch, out_ch, 1, bias=False))


class DownSample(nn.Module):
    """Halve the resolution and widen from ``channels`` to ``channels + extra``."""

    def __init__(self, channels: int, extra: int) -> None:
        super().__init__()
        self.down = resample_conv(channels, channels + extra, 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(x)


class UpSample(nn.Module):
    """Double the resolution and narrow from ``channels + extra`` to ``channels``.

    With ``skip`` given, it is added afterwards (the decoder's skip connection).
    """

    def __init__(self, channels: int, extra: int) -> None:
        super().__init__()
        self.up = resample_conv(channels + extra, channels, 2.0)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)
        return x if skip is None else x + skip


Features = list[torch.Tensor]


class Encoder(nn.Module):
    """Three-level U-Net encoder, two CABs per level; widths n, n+s, n+2s.

    With ``csff`` it also owns the 1x1 convolutions that fuse the previous stage's encoder and
    decoder features into each level (cross-stage feature fusion).
    """

    def __init__(self, n_feat: int, kernel_size: int, reduction: int, act: nn.Module, bias: bool,
                 scale_unetfeats: int, csff: bool) -> None:
        super().__init__()
        widths = [n_feat + i * scale_unetfeats for i in range(3)]
        for level, width in enumerate(widths, start=1):
            setattr(self, f"encoder_level{level}",
                    nn.Sequential(*cab_stack(2, width, kernel_size, reduction, bias, act)))
        self.down12 = DownSample(widths[0], scale_unetfeats)
        self.down23 = DownSample(widths[1], scale_unetfeats)
        self.csff = csff
        if csff:
            for kind in ("enc", "dec"):
                for level, width in enumerate(widths, start=1):
                    setattr(self, f"csff_{kind}{level}", nn.Conv2d(width, width, 1, bias=bias))

    def forward(self, x: torch.Tensor, encoder_outs: Features | None = None,
                decoder_outs: Features | None = None) -> Features:
        fuse = encoder_outs is not None and decoder_outs is not None
        outs: Features = []
        for level in (1, 2, 3):
            if level == 2:
                x = self.down12(x)
            elif level == 3:
                x = self.down23(x)
            x = getattr(self, f"encoder_level{level}")(x)
            if fuse:
                x = (x + getattr(self, f"csff_enc{level}")(encoder_outs[level - 1])
                     + getattr(self, f"csff_dec{level}")(decoder_outs[level - 1]))
            outs.append(x)
        return outs


class Decoder(nn.Module):
    """Three-level U-Net decoder; skips pass through a CAB before being added after upsampling."""

    def __init__(self, n_feat: int, kernel_size: int, reduction: int, act: nn.Module, bias: bool,
                 scale_unetfeats: int) -> None:
        super().__init__()
        widths = [n_feat + i * scale_unetfeats for i in range(3)]
        for level, width in enumerate(widths, start=1):
            setattr(self, f"decoder_level{level}",
                    nn.Sequential(*cab_stack(2, width, kernel_size, reduction, bias, act)))
        self.skip_attn1 = CAB(widths[0], kernel_size, reduction, bias, act)
        self.skip_attn2 = CAB(widths[1], kernel_size, reduction, bias, act)
        self.up21 = UpSample(widths[0], scale_unetfeats)
        self.up32 = UpSample(widths[1], scale_unetfeats)

    def forward(self, outs: Features) -> Features:
        enc1, enc2, enc3 = outs
        dec3 = self.decoder_level3(enc3)
        dec2 = self.decoder_level2(self.up32(dec3, self.skip_attn2(enc2)))
        dec1 = self.decoder_level1(self.up21(dec2, self.skip_attn1(enc1)))
        return [dec1, dec2, dec3]


class ORB(nn.Module):
    """Original-resolution block: ``num_cab`` CABs and a bias-free conv, plus the input."""

    def __init__(self, channels: int, kernel_size: int, reduction: int, act: nn.Module,
                 bias: bool, num_cab: int) -> None:
        super().__init__()
        # The authors' closing conv ignores ``bias`` (always bias-free).
        self.body = nn.Sequential(*cab_stack(num_cab, channels, kernel_size, reduction, bias, act),
                                  conv(channels, channels, kernel_size, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + x


class ORSNet(nn.Module):
    """Stage 3: three ORBs at full resolution, each followed by fusing stage-2 U-Net features.

    Level-k encoder/decoder features are brought to full resolution (k-1 UpSamples) and
    widened by 1x1 convolutions before being added.
    """

    def __init__(self, n_feat: int, scale_orsnetfeats: int, kernel_size: int, reduction: int,
                 act: nn.Module, bias: bool, scale_unetfeats: int, num_cab: int) -> None:
        super().__init__()
        width = n_feat + scale_orsnetfeats
        for i in (1, 2, 3):
            setattr(self, f"orb{i}", ORB(width, kernel_size, reduction, act, bias, num_cab))
        s = scale_unetfeats
        self.up_enc1 = UpSample(n_feat, s)
        self.up_dec1 = UpSample(n_feat, s)
        self.up_enc2 = nn.Sequential(UpSample(n_feat + s, s), UpSample(n_feat, s))
        self.up_dec2 = nn.Sequential(UpSample(n_feat + s, s), UpSample(n_feat, s))
        for kind in ("enc", "dec"):
            for i in (1, 2, 3):
                setattr(self, f"conv_{kind}{i}", nn.Conv2d(n_feat, width, 1, bias=bias))

    def _lift(self, kind: str, level: int, feat: torch.Tensor) -> torch.Tensor:
        """Level-``level`` U-Net feature at full resolution and ORSNet width."""
        if level > 1:
            feat = getattr(self, f"up_{kind}{level - 1}")(feat)
        return getattr(self, f"conv_{kind}{level}")(feat)

    def forward(self, x: torch.Tensor, encoder_outs: Features,
                decoder_outs: Features) -> torch.Tensor:
        for level in (1, 2, 3):
            x = getattr(self, f"orb{level}")(x)
            x = (x + self._lift("enc", level, encoder_outs[level - 1])
                 + self._lift("dec", level, decoder_outs[level - 1]))
        return x


def _cat_pairs(a: Features, b: Features, dim: int) -> Features:
    """Concatenate two feature pyramids level by level along ``dim``."""
    return [torch.cat((u, v), dim) for u, v in zip(a, b)]


class MPRNet(nn.Module):
    """Multi-stage progressive restoration network; returns ``[stage3, stage2, stage1]`` images.

    Spatial sizes must be multiples of 8 (quarter patches go through two 2x downsamplings).
    """

    def __init__(self, in_c: int = 3, out_c: int = 3, n_feat: int = 40, scale_unetfeats: int = 20,
                 scale_orsnetfeats: int = 16, num_cab: int = 8, kernel_size: int = 3,
                 reduction: int = 4, bias: bool = False) -> None:
        super().__init__()
        act = nn.PReLU()  # one slope shared by every CAB, as in the authors' code
        for i in (1, 2, 3):
            setattr(self, f"shallow_feat{i}",
                    nn.Sequential(conv(in_c, n_feat, kernel_size, bias),
                                  CAB(n_feat, kernel_size, reduction, bias, act)))
        unet = (n_feat, kernel_size, reduction, act, bias, scale_unetfeats)
        self.stage1_encoder = Encoder(*unet, csff=False)
        self.stage1_decoder = Decoder(*unet)
        self.stage2_encoder = Encoder(*unet, csff=True)
        self.stage2_decoder = Decoder(*unet)
        self.stage3_orsnet = ORSNet(n_feat, scale_orsnetfeats, kernel_size, reduction, act, bias,
                                    scale_unetfeats, num_cab)
        self.sam12 = SAM(n_feat, 1, bias, in_c)
        self.sam23 = SAM(n_feat, 1, bias, in_c)
        self.concat12 = conv(2 * n_feat, n_feat, kernel_size, bias)
        self.concat23 = conv(2 * n_feat, n_feat + scale_orsnetfeats, kernel_size, bias)
        self.tail = conv(n_feat + scale_orsnetfeats, out_c, kernel_size, bias)

    def forward(self, x3_img: torch.Tensor) -> list[torch.Tensor]:
        h, w = x3_img.shape[-2:]
        hh, hw = h // 2, w // 2
        # Stage 2 sees the top and bottom halves, stage 1 the four quarters.
        x2_imgs = [x3_img[:, :, :hh], x3_img[:, :, hh:]]
        x1_imgs = [[half[..., :hw], half[..., hw:]] for half in x2_imgs]

        # Stage 1: encode each quarter, join left/right features, decode each half.
        feat1, res1, sam_feats, stage1_imgs = [], [], [], []
        for half_img, quarters in zip(x2_imgs, x1_imgs):
            left, right = (self.stage1_encoder(self.shallow_feat1(q)) for q in quarters)
            feat = _cat_pairs(left, right, 3)
            res = self.stage1_decoder(feat)
            sam_feat, img = self.sam12(res[0], half_img)
            feat1.append(feat)
            res1.append(res)
            sam_feats.append(sam_feat)
            stage1_imgs.append(img)
        stage1_img = torch.cat(stage1_imgs, 2)

        # Stage 2: encode each half with CSFF from stage 1, join top/bottom, decode.
        feat2_halves = []
        for half_img, sam_feat, feat, res in zip(x2_imgs, sam_feats, feat1, res1):
            x2 = self.concat12(torch.cat([self.shallow_feat2(half_img), sam_feat], 1))
            feat2_halves.append(self.stage2_encoder(x2, feat, res))
        feat2 = _cat_pairs(feat2_halves[0], feat2_halves[1], 2)
        res2 = self.stage2_decoder(feat2)
        x3_samfeats, stage2_img = self.sam23(res2[0], x3_img)

        # Stage 3: full-resolution ORSNet fed by the stage-2 U-Net features.
        x3 = self.concat23(torch.cat([self.shallow_feat3(x3_img), x3_samfeats], 1))
        x3 = self.stage3_orsnet(x3, feat2, res2)
        return [self.tail(x3) + x3_img, stage2_img, stage1_img]


def mprnet(in_c: int = 3, out_c: int = 3, n_feat: int = 40, scale_unetfeats: int = 20,
           scale_orsnetfeats: int = 16, num_cab: int = 8, kernel_size: int = 3,
           reduction: int = 4, bias: bool = False) -> MPRNet:
    """Build :class:`MPRNet` (defaults: the authors' deraining configuration)."""
    return MPRNet(in_c=in_c, out_c=out_c, n_feat=n_feat, scale_unetfeats=scale_unetfeats,
                  scale_orsnetfeats=scale_orsnetfeats, num_cab=num_cab, kernel_size=kernel_size,
                  reduction=reduction, bias=bias)


_OFFICIAL = {"in_c": 3, "out_c": 3, "n_feat": 40, "scale_unetfeats": 20,
             "scale_orsnetfeats": 16, "num_cab": 8, "kernel_size": 3, "reduction": 4,
             "bias": False}

register_model(ModelInfo(
    name="mprnet",
    factory=mprnet,
    task="derain",
    description="MPRNet: three-stage multi-patch network with supervised attention (Rain13k)",
    paper="Zamir et al., Multi-Stage Progressive Image Restoration, CVPR 2021",
    repository="swz30/MPRNet, Deraining/MPRNet.py",
    checkpoint_format="`.pth`, weights under 'state_dict' (sometimes with 'module.' keys)",
    variants={
        "official": _OFFICIAL,
        # 131k parameters (3.6 %), about 3 GMACs at 3x256x256: every part kept, narrower.
        "tiny": {**_OFFICIAL, "n_feat": 8, "scale_unetfeats": 6, "scale_orsnetfeats": 4,
                 "num_cab": 1},
    },
    channel_order="RGB",
    output_index=0,
    size_multiple=8,
    penultimate_layer="tail",
    prune_exclude=("shallow_feat1.0", "shallow_feat2.0", "shallow_feat3.0",
                   "sam12.conv2", "sam12.conv3", "sam23.conv2", "sam23.conv3", "tail"),
    checkpoint_key="state_dict",
    checkpoint_module_prefix=False,
    metric_space="y",
    crop_border=0,
    input_range_note="RGB in [0, 1]",
))
