"""PReNet and PRN: progressive recurrent deraining networks, with the authors' ablations.

A re-implementation of the classes of csdwren/PReNet (``networks.py`` @ 6d908d1) whose
parameter names match the authors' ``net_latest.pth`` files (bare state dicts), so every
released checkpoint loads with ``strict=True``.

One stage, repeated ``stages`` times (T in the paper) with the same weights:

* ``conv0``: 3x3 conv + ReLU on the rainy input concatenated with the previous stage's
  result (6 channels; the first stage sees the input twice). The ``_x`` ablation feeds only
  the previous result (3 channels).
* a recurrent unit carrying a state across stages: a convolutional LSTM (gates ``conv_i``,
  ``conv_f``, ``conv_g``, ``conv_o`` on ``cat(x, h)``), a convolutional GRU (``conv_z``,
  ``conv_b``, ``conv_g``), or none (PRN). The state starts at zero.
* ``blocks`` residual blocks ``x = relu(res_conv(x) + x)``, each ``conv-ReLU-conv-ReLU``
  (``res_conv1..5``); the recursive ``_r`` variants apply one shared block ``blocks`` times.
* ``conv``: 3x3 conv to 3 channels; PReNet/PRN add the rainy input (``residual``), the
  LSTM/GRU/x ablations do not.

The forward returns ``(last stage's result, list of every stage's result)`` like the
authors'; the restored image is the first element (the last stage's output). Input: RGB in
[0, 1] (``test_PReNet.py`` reads with OpenCV and swaps to RGB, then divides by 255).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dreamprune_cli.models.registry import ModelInfo, register_model

Recurrence = Literal["lstm", "gru", "none"]


def _conv(in_channels: int, out_channels: int, act: nn.Module | None = None) -> nn.Sequential:
    """``Sequential(conv3x3[, act])`` with 'same' zero padding (``.0`` is the conv)."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, 1, 1)]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


def _res_block(channels: int) -> nn.Sequential:
    """``conv-ReLU-conv-ReLU`` at constant width (names ``.0`` and ``.2``)."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU(),
        nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU(),
    )


class ProgressiveDerainer(nn.Module):
    """PReNet / PRN and their variants (Ren et al., CVPR 2019).

    Args:
        stages: recurrent stages T (official 6; the ablations use 5 and 7).
        channels: feature width (official 32).
        blocks: residual blocks per stage (official 5); for ``recursive`` networks, how many
            times the one shared block is applied.
        recurrence: ``"lstm"`` (PReNet), ``"gru"`` (PReNet_GRU) or ``"none"`` (PRN).
        recursive: one shared residual block (``res_conv1``) instead of ``blocks`` distinct
            ones (the ``_r`` variants).
        input_concat: each stage sees ``cat(input, previous)`` (6 channels); ``False`` is the
            ``PReNet_x`` ablation (the previous result only, 3 channels).
        residual: add the rainy input to each stage's output (PReNet, PRN and their ``_r``
            variants); the LSTM/GRU/x ablations predict the image directly.

    Raises:
        ValueError: non-positive sizes or an unknown recurrence.

    Shape:
        input ``(N, 3, H, W)``, any H, W; returns ``((N, 3, H, W), [T x (N, 3, H, W)])``.
    """

    def __init__(self, stages: int = 6, channels: int = 32, blocks: int = 5,
                 recurrence: Recurrence = "lstm", recursive: bool = False,
                 input_concat: bool = True, residual: bool = True) -> None:
        super().__init__()
        if stages < 1 or channels < 1 or blocks < 0:
            raise ValueError(f"PReNet needs stages >= 1, channels >= 1 and blocks >= 0, got "
                             f"stages={stages}, channels={channels}, blocks={blocks}")
        if recurrence not in ("lstm", "gru", "none"):
            raise ValueError(f"recurrence must be 'lstm', 'gru' or 'none', got {recurrence!r}")
        self.stages = stages
        self.blocks = blocks
        self.recurrence = recurrence
        self.recursive = recursive
        self.input_concat = input_concat
        self.residual = residual
        c = channels
        self.conv0 = _conv(6 if input_concat else 3, c, nn.ReLU())
        distinct = min(blocks, 1) if recursive else blocks
        self.block_names = [f"res_conv{i + 1}" for i in range(distinct)]
        for name in self.block_names:
            self.add_module(name, _res_block(c))
        if recurrence == "lstm":
            self.conv_i = _conv(2 * c, c, nn.Sigmoid())
            self.conv_f = _conv(2 * c, c, nn.Sigmoid())
            self.conv_g = _conv(2 * c, c, nn.Tanh())
            self.conv_o = _conv(2 * c, c, nn.Sigmoid())
        elif recurrence == "gru":
            self.conv_z = _conv(2 * c, c, nn.Sigmoid())
            self.conv_b = _conv(2 * c, c, nn.Sigmoid())
            self.conv_g = _conv(2 * c, c, nn.Tanh())
        self.conv = _conv(c, 3)

    def _state_width(self) -> int:
        """Width of the recurrent state, read from the layers (it follows any resizing)."""
        return self.conv_g[0].out_channels

    def _residual_blocks(self) -> list[nn.Module]:
        if self.recursive:
            return [getattr(self, self.block_names[0])] * self.blocks if self.blocks else []
        return [getattr(self, name) for name in self.block_names]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, _, height, width = image.shape
        hidden = cell = None
        if self.recurrence != "none":
            hidden = image.new_zeros((batch, self._state_width(), height, width))
            cell = image.new_zeros((batch, self._state_width(), height, width))
        blocks = self._residual_blocks()
        x = image
        results: list[torch.Tensor] = []
        for _ in range(self.stages):
            x = self.conv0(torch.cat((image, x), 1) if self.input_concat else x)
            if self.recurrence == "lstm":
                gates_in = torch.cat((x, hidden), 1)
                cell = (self.conv_f(gates_in) * cell
                        + self.conv_i(gates_in) * self.conv_g(gates_in))
                hidden = self.conv_o(gates_in) * torch.tanh(cell)
                x = hidden
            elif self.recurrence == "gru":
                gates_in = torch.cat((x, hidden), 1)
                update = self.conv_z(gates_in)
                candidate = self.conv_g(torch.cat((self.conv_b(gates_in) * hidden, x), 1))
                hidden = (1 - update) * hidden + update * candidate
                x = hidden
            for block in blocks:
                x = F.relu(block(x) + x)
            x = self.conv(x)
            if self.residual:
                x = x + image
            results.append(x)
        return x, results


def prenet(stages: int = 6, channels: int = 32, blocks: int = 5,
           recurrence: Recurrence = "lstm", recursive: bool = False,
           input_concat: bool = True, residual: bool = True) -> nn.Module:
    """Build a PReNet-family network; the defaults are the authors' ``PReNet(6)``."""
    return ProgressiveDerainer(stages=stages, channels=channels, blocks=blocks,
                               recurrence=recurrence, recursive=recursive,
                               input_concat=input_concat, residual=residual)


_PAPER = ("D. Ren, W. Zuo, Q. Hu, P. Zhu, D. Meng: Progressive Image Deraining Networks: "
          "A Better and Simpler Baseline. CVPR 2019.")
_CHECKPOINT = ("`net_latest.pth`, a bare state dict in PyTorch's legacy (pre-zip) "
               "serialization (logs/<set>/<model>/net_latest.pth)")
_LICENCE = "the authors' repository ships no licence file"

# name -> (authors' class, constructor config, description); one registry entry each.
_FAMILY: dict[str, tuple[str, dict[str, object], str]] = {
    "prenet": ("PReNet", {"recurrence": "lstm"},
               "PReNet: T stages of conv + conv-LSTM + 5 ResBlocks, input residual"),
    "prenet_r": ("PReNet_r", {"recurrence": "lstm", "recursive": True},
                 "PReNet_r: PReNet with one ResBlock applied 5 times (recursive)"),
    "prn": ("PRN", {"recurrence": "none"},
            "PRN: PReNet without the recurrent unit"),
    "prn_r": ("PRN_r", {"recurrence": "none", "recursive": True},
              "PRN_r: PRN with one ResBlock applied 5 times (recursive)"),
    "prenet_lstm": ("PReNet_LSTM", {"recurrence": "lstm", "residual": False},
                    "PReNet ablation: LSTM, no input residual (Ablation/PReNet{5,6,7}_LSTM, "
                    "PReNet6_RecSSIM)"),
    "prenet_gru": ("PReNet_GRU", {"recurrence": "gru", "residual": False},
                   "PReNet ablation: conv-GRU, no input residual (Ablation/PReNet6_GRU)"),
    "prenet_x": ("PReNet_x", {"recurrence": "lstm", "residual": False,
                              "input_concat": False},
                 "PReNet ablation: stages see only the previous result (Ablation/PReNet6_x)"),
}


def _register_family() -> None:
    for name, (authors_class, config, description) in _FAMILY.items():
        official = {"stages": 6, "channels": 32, "blocks": 5, **config}
        register_model(ModelInfo(
            name=name,
            factory=prenet,
            task="derain",
            description=f"{description}; restored image: the last stage's output",
            paper=_PAPER,
            repository=f"csdwren/PReNet, networks.py class {authors_class} ({_LICENCE})",
            checkpoint_format=_CHECKPOINT,
            variants={
                "official": official,
                "t5": {**official, "stages": 5},
                "t7": {**official, "stages": 7},
                "tiny": {**official, "stages": 3, "channels": 4, "blocks": 2},
            },
            output_index=0,
            size_multiple=1,
            penultimate_layer="conv.0",
            prune_exclude=("conv0.0", "conv.0"),
            checkpoint_key=None,
            metric_space="y",
            crop_border=0,
            ssim_variant="basicsr",
            quantization="truncate",
            input_range_note=("RGB in [0, 1]; returns (last stage, every stage): the first "
                              "element is the restored image"),
            # depth pruning: fewer stages (weights shared), fewer distinct residual blocks;
            # a recursive variant repeats its one shared block `blocks` times
            depth_branches=() if config.get("recursive") else ("res_conv*",),
            depth_repeats=("stages", "blocks") if config.get("recursive") else ("stages",),
        ))


_register_family()
