"""Attentive GAN generator (AGANet / DeRaindrop) for raindrop removal.

A re-implementation of the generator of rui1996/DeRaindrop (``models/generator.py``) whose
parameter names match the authors' ``gen.pkl`` (a bare state dict), so it loads with
``strict=True``.

Two parts, both fed the BGR image in ``[0, 1]`` concatenated with a one-channel attention map:

* an attentive-recurrent network: ``iterations`` steps of a head conv, ``det_blocks`` residual
  double-conv blocks and a convolutional LSTM (gates ``conv_i/f/g/o``), each step emitting an
  attention map ``det_conv_mask(h)`` that is fed to the next step (the first step sees 0.5);
* a contextual autoencoder on image + final attention map: two stride-2 downsamplings, four
  dilated convs, two transposed-conv upsamplings with skips, and side outputs at 1/4 and 1/2
  resolution (``outframe1/2``, used by the authors' multi-scale loss).

The forward returns ``(attention_maps, frame1, frame2, image)`` like the authors'; the restored
image is the last element. Widths and step counts are parameters; the defaults are official.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dreamprune_cli.models.registry import ModelInfo, register_model


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
          dilation: int = 1, act: nn.Module | None = None) -> nn.Sequential:
    """``Sequential(conv[, act])`` with 'same' zero padding (``.0`` is the conv, as theirs)."""
    padding = dilation * (kernel_size - 1) // 2
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                                         dilation=dilation)]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


def _double_conv(channels: int) -> nn.Sequential:
    """``conv-ReLU-conv-ReLU`` at constant width (names ``.0`` and ``.2``)."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU(),
    )


def _upsample(in_channels: int, out_channels: int) -> nn.Sequential:
    """2x transposed conv, then a 2x2 stride-1 average over a top/left reflection pad, ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1),
        nn.ReflectionPad2d((1, 0, 1, 0)),
        nn.AvgPool2d(2, stride=1),
        nn.ReLU(),
    )


class AttentiveGenerator(nn.Module):
    """The DeRaindrop generator.

    Args:
        iterations: recurrent attention steps (official 4).
        det_channels: width of the attentive-recurrent network and of its LSTM (official 32).
        det_blocks: residual double-conv blocks per step, ``det_conv1..N`` (official 5).
        width: base width of the autoencoder; it uses ``width``, ``2*width``, ``4*width`` and
            ``width // 2`` channels (official 64).
    """

    def __init__(self, iterations: int = 4, det_channels: int = 32, det_blocks: int = 5,
                 width: int = 64) -> None:
        super().__init__()
        if iterations < 1 or det_channels < 1 or det_blocks < 0 or width < 2 or width % 2:
            raise ValueError(f"AGANet needs iterations >= 1, det_channels >= 1, det_blocks >= 0 "
                             f"and an even width >= 2, got iterations={iterations}, "
                             f"det_channels={det_channels}, det_blocks={det_blocks}, "
                             f"width={width}")
        self.iterations = iterations
        self.det_channels = det_channels
        c, w = det_channels, width

        # Attentive-recurrent network.
        self.det_conv0 = _conv(4, c, act=nn.ReLU())
        self.det_block_names = [f"det_conv{i + 1}" for i in range(det_blocks)]
        for block_name in self.det_block_names:
            self.add_module(block_name, _double_conv(c))
        self.conv_i = _conv(2 * c, c, act=nn.Sigmoid())
        self.conv_f = _conv(2 * c, c, act=nn.Sigmoid())
        self.conv_g = _conv(2 * c, c, act=nn.Tanh())
        self.conv_o = _conv(2 * c, c, act=nn.Sigmoid())
        self.det_conv_mask = _conv(c, 1)

        # Contextual autoencoder.
        self.conv1 = _conv(4, w, 5, act=nn.ReLU())
        self.conv2 = _conv(w, 2 * w, stride=2, act=nn.ReLU())
        self.conv3 = _conv(2 * w, 2 * w, act=nn.ReLU())
        self.conv4 = _conv(2 * w, 4 * w, stride=2, act=nn.ReLU())
        self.conv5 = _conv(4 * w, 4 * w, act=nn.ReLU())
        self.conv6 = _conv(4 * w, 4 * w, act=nn.ReLU())
        self.diconv1 = _conv(4 * w, 4 * w, dilation=2, act=nn.ReLU())
        self.diconv2 = _conv(4 * w, 4 * w, dilation=4, act=nn.ReLU())
        self.diconv3 = _conv(4 * w, 4 * w, dilation=8, act=nn.ReLU())
        self.diconv4 = _conv(4 * w, 4 * w, dilation=16, act=nn.ReLU())
        self.conv7 = _conv(4 * w, 4 * w, act=nn.ReLU())
        self.conv8 = _conv(4 * w, 4 * w, act=nn.ReLU())
        self.deconv1 = _upsample(4 * w, 2 * w)
        self.conv9 = _conv(2 * w, 2 * w, act=nn.ReLU())
        self.deconv2 = _upsample(2 * w, w)
        self.conv10 = _conv(w, w // 2, act=nn.ReLU())
        self.outframe1 = _conv(4 * w, 3, act=nn.ReLU())
        self.outframe2 = _conv(2 * w, 3, act=nn.ReLU())
        self.output = _conv(w // 2, 3)

    def attention_maps(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Run the recurrent steps; the LSTM state and first map are made from ``image``."""
        b, _, h, w = image.shape
        mask = image.new_full((b, 1, h, w), 0.5)
        # The state's width is read from the gate convolution (det_channels unless the
        # network was channel-pruned).
        state_channels = self.conv_o[0].out_channels
        hidden = image.new_zeros((b, state_channels, h, w))
        cell = image.new_zeros((b, state_channels, h, w))
        masks: list[torch.Tensor] = []
        for _ in range(self.iterations):
            x = self.det_conv0(torch.cat((image, mask), 1))
            for block_name in self.det_block_names:
                x = F.relu(getattr(self, block_name)(x) + x)
            x = torch.cat((x, hidden), 1)
            cell = self.conv_f(x) * cell + self.conv_i(x) * self.conv_g(x)
            hidden = self.conv_o(x) * torch.tanh(cell)
            mask = self.det_conv_mask(hidden)
            masks.append(mask)
        return masks

    def forward(
        self, image: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        masks = self.attention_maps(image)
        x = self.conv1(torch.cat((image, masks[-1]), 1))
        res1 = x
        x = self.conv3(self.conv2(x))
        res2 = x
        for layer in (self.conv4, self.conv5, self.conv6, self.diconv1, self.diconv2,
                      self.diconv3, self.diconv4, self.conv7, self.conv8):
            x = layer(x)
        frame1 = self.outframe1(x)
        x = self.conv9(self.deconv1(x) + res2)
        frame2 = self.outframe2(x)
        x = self.conv10(self.deconv2(x) + res1)
        return masks, frame1, frame2, self.output(x)


def aganet(iterations: int = 4, det_channels: int = 32, det_blocks: int = 5,
           width: int = 64) -> nn.Module:
    """Build the DeRaindrop generator (the authors' class takes no arguments; these defaults
    reproduce it)."""
    return AttentiveGenerator(iterations=iterations, det_channels=det_channels,
                              det_blocks=det_blocks, width=width)


register_model(ModelInfo(
    name="aganet",
    factory=aganet,
    task="raindrop",
    description="Attentive GAN generator: recurrent conv-LSTM attention + contextual autoencoder",
    paper=("R. Qian, R. T. Tan, W. Yang, J. Su, J. Liu: Attentive Generative Adversarial "
           "Network for Raindrop Removal from a Single Image. CVPR 2018."),
    repository="rui1996/DeRaindrop, models/generator.py",
    checkpoint_format="`.pkl`, a bare state dict (weights/gen.pkl)",
    variants={
        "official": {"iterations": 4, "det_channels": 32, "det_blocks": 5, "width": 64},
        "tiny": {"iterations": 4, "det_channels": 8, "det_blocks": 1, "width": 12},
    },
    mean=None,
    std=None,
    channel_order="BGR",
    output_index=-1,
    size_multiple=4,
    penultimate_layer="output.0",
    prune_exclude=("det_conv0.0", "conv1.0", "det_conv_mask.0", "outframe1.0", "outframe2.0",
                   "output.0"),
    checkpoint_key=None,
    checkpoint_module_prefix=False,
    metric_space="y",
    crop_border=0,
    input_range_note=("BGR in [0, 1] (OpenCV); output unclamped, last element of the returned "
                      "tuple"),
    # depth pruning: the attention's residual branches relu(det_convN(x) + x), its steps
    depth_branches=("det_conv[1-9]",),
    depth_repeats=("iterations",),
))
