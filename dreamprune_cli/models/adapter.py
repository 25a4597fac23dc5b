"""One way to call any registered network: RGB [0, 1] in, restored RGB [0, 1] out.

The adapter applies what the registry says about the network (channel order, input
normalisation, size multiple, which output is the image), so no subcommand re-derives it.
It is a plain differentiable module: dreaming backpropagates through it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.registry import ModelInfo


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad ``x`` (N, C, H, W) at the bottom/right to a multiple of ``multiple``.

    Reflect padding as the authors' test scripts do; replicate where the image is too small
    to reflect (reflection needs the pad to be smaller than the side).
    """
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def network_input_size(info: ModelInfo, size: int) -> tuple[int, int, int]:
    """``(C, H, W)`` that the bare network receives for one RGB ``3 x size x size`` image.

    ``(3, size, size)`` unless the model has an input encoder of its own (GCANet: 4 channels,
    image + edge map); MACs "at 3xSxS" of a bare network are counted at this size.
    """
    if info.input_encoder is None:
        return (3, size, size)
    encoded = info.input_encoder(torch.zeros((1, 3, size, size), device="meta"))
    channels, height, width = encoded.shape[1:]
    return (int(channels), int(height), int(width))


class RestorationAdapter(nn.Module):
    """Wraps a bare network so that it maps RGB [0, 1] ``(N, 3, H, W)`` of any size to RGB.

    Steps: pad (reflect) to the size multiple, RGB -> the network's channel order, subtract
    mean / divide by std, the model's own input encoder (if any), run, pick the restored
    image from the outputs, the model's own output decoder (if any), back to RGB, crop.
    The output is not clamped (training losses see the raw output; metrics clamp).
    """

    def __init__(self, network: nn.Module, info: ModelInfo) -> None:
        super().__init__()
        self.network = network
        self.info = info
        if info.mean is not None and info.std is not None:
            self.register_buffer("mean", torch.tensor(info.mean).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(info.std).view(1, 3, 1, 1), persistent=False)
        else:
            self.mean = None
            self.std = None

    def to_network_input(self, x: torch.Tensor) -> torch.Tensor:
        """RGB [0, 1] (already padded) -> what the bare network expects."""
        if self.info.channel_order == "BGR":
            x = x.flip(1)
        if self.mean is not None:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        if self.info.input_encoder is not None:
            x = self.info.input_encoder(x)
        return x

    def select_output(self, outputs: object) -> torch.Tensor:
        """The restored image among the network's outputs.

        Raises:
            UsageError: the network returned several outputs and declares no
                ``output_index`` (custom models), or the index is out of range.
        """
        if self.info.output_index is None:
            if not isinstance(outputs, torch.Tensor):
                raise UsageError(
                    f"model {self.info.name!r} returned a {type(outputs).__name__}, not an "
                    "image tensor: declare output_index = N on its class (which element is "
                    "the restored image)")
            return outputs
        try:
            return outputs[self.info.output_index]  # type: ignore[index]
        except (IndexError, KeyError, TypeError):
            raise UsageError(f"model {self.info.name!r}: output_index "
                             f"{self.info.output_index} does not select an image from its "
                             f"{type(outputs).__name__} output") from None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images (N, 3, H, W), got {tuple(x.shape)}")
        height, width = x.shape[-2:]
        padded = pad_to_multiple(x, self.info.size_multiple)
        restored = self.select_output(self.network(self.to_network_input(padded)))
        if self.info.output_decoder is not None:
            ordered = padded.flip(1) if self.info.channel_order == "BGR" else padded
            restored = self.info.output_decoder(restored, ordered, self.network)
        if self.info.channel_order == "BGR":
            restored = restored.flip(1)
        return restored[..., :height, :width]
