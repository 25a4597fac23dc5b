"""The identity "model": returns its input.

It scores the degraded input against the target, the baseline every restoration paper reports.
"""

from __future__ import annotations

import torch
from torch import nn

from dreamprune_cli.models.registry import ModelInfo, register_model


class Identity(nn.Module):
    """Returns its input unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def identity() -> nn.Module:
    return Identity()


register_model(ModelInfo(
    name="identity",
    factory=identity,
    task="identity",
    description="degraded input as output (baseline score)",
    variants={"official": {}, "tiny": {}},
    metric_space="rgb",
))
