"""The adapter: RGB [0, 1] of any size in, the restored RGB image out, differentiable."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from dreamprune_cli.models import build_model, get_model_info, list_models
from dreamprune_cli.models.adapter import RestorationAdapter, pad_to_multiple
from dreamprune_cli.models.registry import ModelInfo


@pytest.mark.parametrize("name", list_models())
def test_tiny_variant_odd_size_forward_backward(name: str) -> None:
    info = get_model_info(name)
    adapter = RestorationAdapter(build_model(name, "tiny"), info)
    x = torch.rand(2, 3, 37, 53, requires_grad=True)
    out = adapter(x)
    assert out.shape == (2, 3, 37, 53)
    out.abs().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    if name != "identity":
        assert x.grad.abs().sum() > 0


class _Recorder(nn.Module):
    """Returns (its input, a marker) so the adapter's transforms can be inspected."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.seen = x
        return torch.zeros(1), x


def _info(**kwargs: object) -> ModelInfo:
    base = ModelInfo(name="rec", factory=_Recorder, task="derain", description="test")
    return dataclasses.replace(base, **kwargs)


def test_bgr_normalisation_padding_and_output_selection() -> None:
    info = _info(channel_order="BGR", mean=(0.1, 0.2, 0.3), std=(0.5, 0.5, 0.5),
                 output_index=1, size_multiple=8)
    network = _Recorder()
    adapter = RestorationAdapter(network, info)
    x = torch.rand(1, 3, 10, 13)
    out = adapter(x)
    assert network.seen.shape == (1, 3, 16, 16)
    expected_in = (pad_to_multiple(x, 8).flip(1) - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / 0.5
    assert torch.allclose(network.seen, expected_in)
    # the network echoed its (BGR, normalised) input: the adapter flips back to RGB and crops
    assert torch.allclose(out, expected_in.flip(1)[..., :10, :13])


def test_reflect_padding_and_tiny_inputs() -> None:
    x = torch.arange(12.0).view(1, 1, 3, 4)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (1, 1, 4, 4)
    assert torch.equal(padded[0, 0, 3], x[0, 0, 1])  # reflected row
    assert pad_to_multiple(torch.rand(1, 1, 2, 2), 16).shape == (1, 1, 16, 16)  # replicate
