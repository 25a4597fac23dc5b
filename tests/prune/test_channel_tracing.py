"""Corrections to Torch-Pruning's graph: untraced concatenation operands (PReNet's LSTM),
channel-preserving layers (GCANet's ShareSepConv), single-channel gates, and errors that
name the layer the library cannot handle."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import pytest

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.registry import build_model
from dreamprune_cli.prune.channel.allocate import (apply_channel_counts, channel_groups,
                                                   protected_layers, trace_input)
from dreamprune_cli.prune.channel.tracing import build_graph, complete_constant_concats


class _StateFirst(nn.Module):
    """``b(cat(zeros(2), a(x)))``: the untraced operand comes first, so a's channel ``j`` is
    b's input channel ``2 + j``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1)
        self.b = nn.Conv2d(6, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = x.new_zeros((x.shape[0], 2, *x.shape[2:]))
        return self.b(torch.cat((state, self.a(x)), 1))


def test_untraced_concat_operand_keeps_the_offsets() -> None:
    torch.manual_seed(0)
    toy = _StateFirst().eval()
    before = toy.b.weight.detach().clone()
    graph = build_graph(toy, torch.rand(1, 3, 8, 8))
    group = graph.get_pruning_group(toy.a, graph.get_pruner_of_module(toy.a).prune_out_channels,
                                    [1])
    group.prune()
    assert toy.a.out_channels == 3 and toy.b.in_channels == 5
    # b's input channel 2 + 1 = 3 went, the state's two channels stayed
    assert torch.equal(toy.b.weight, before[:, [0, 1, 2, 4, 5]])


def test_untraced_concat_operand_is_completed_once() -> None:
    toy = _StateFirst().eval()
    graph = build_graph(toy, torch.rand(1, 3, 8, 8))
    assert complete_constant_concats(graph) == []  # build_graph already completed it


def _tiny(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, "tiny").eval()


def _outputs(network: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        out = network(x)
    return [out[0], *out[1]] if isinstance(out, tuple) else [out]


def _remove_dead_channel(network: nn.Module, x: torch.Tensor, root: str,
                         channel: int, *more: tuple[str, int]) -> nn.Module:
    """Remove channel ``channel`` of the group rooted at ``root`` (and of further
    ``(root, channel)`` pairs, all in one pass from the recorded trace)."""
    groups, _ = channel_groups(network, x)
    dead = dict([(root, channel), *more])
    for group in groups:
        if group.root in dead:
            first = dead[group.root]
            group.order = [first] + [c for c in range(group.channels) if c != first]
    kept = [g.channels - (g.root in dead) for g in groups]
    return apply_channel_counts(network, groups, kept)


@pytest.mark.parametrize("name", ["prenet", "prenet_x"])
def test_prenet_lstm_state_channel_removal_changes_nothing(name: str) -> None:
    """Channel 1 of the LSTM state made dead (its candidate gate and the residual blocks
    write 0 there): removing it removes the gates' input channel c + 1, not 1."""
    network = _tiny(name)
    with torch.no_grad():
        for conv in [network.conv_g[0]] + [getattr(network, n)[2] for n in network.block_names]:
            conv.weight[1] = 0
            conv.bias[1] = 0
    x = trace_input(1)
    thinner = _remove_dead_channel(network, x, "conv_g.0", 1)
    assert thinner.conv_i[0].in_channels == 7 and thinner.conv_g[0].out_channels == 3
    assert thinner.conv0[0].out_channels == 4
    for got, want in zip(_outputs(thinner, x), _outputs(network, x), strict=True):
        assert torch.allclose(got, want, atol=1e-6)


def test_prenet_stage_input_channel_removal_changes_nothing() -> None:
    network = _tiny("prenet")
    with torch.no_grad():
        network.conv0[0].weight[2] = 0
        network.conv0[0].bias[2] = -1  # relu(-1) = 0
    x = trace_input(1)
    thinner = _remove_dead_channel(network, x, "conv0.0", 2)
    assert thinner.conv0[0].out_channels == 3 and thinner.conv_o[0].in_channels == 7
    for got, want in zip(_outputs(thinner, x), _outputs(network, x), strict=True):
        assert torch.allclose(got, want, atol=1e-6)


def test_prenet_state_and_stage_input_channels_removed_together() -> None:
    """Both halves of the gates' input lose a channel in one pass: the concatenations'
    offsets stay right after the first group is removed."""
    network = _tiny("prenet")
    with torch.no_grad():
        for conv in [network.conv_g[0]] + [getattr(network, n)[2] for n in network.block_names]:
            conv.weight[1] = 0
            conv.bias[1] = 0
        network.conv0[0].weight[2] = 0
        network.conv0[0].bias[2] = -1
    x = trace_input(1)
    thinner = _remove_dead_channel(network, x, "conv_g.0", 1, ("conv0.0", 2))
    assert thinner.conv_f[0].in_channels == 6 and thinner.conv_f[0].out_channels == 3
    for got, want in zip(_outputs(thinner, x), _outputs(network, x), strict=True):
        assert torch.allclose(got, want, atol=1e-6)


def test_prenet_gate_group_is_prunable() -> None:
    groups, protected = channel_groups(_tiny("prenet"), trace_input(1))
    state = next(g for g in groups if "conv_g.0" in g.layers)
    assert {"conv_i.0", "conv_f.0", "conv_o.0", "res_conv1.2", "res_conv2.2", "conv.0"} \
        <= set(state.layers)
    assert protected == ["conv.0"]


def test_gcanet_share_sep_conv_passes_channel_removal_through() -> None:
    """Channel 3 of res1's inner width made dead: its smoothing layer (one shared kernel)
    keeps its (1, 1, 3, 3) weight and follows the thinner width."""
    network = _tiny("gcanet")
    with torch.no_grad():
        network.res1.conv1.weight[3] = 0
        network.res1.norm1.bias[3] = 0
    x = trace_input(2, channels=4)
    thinner = _remove_dead_channel(network, x, "res1.conv1", 3)
    assert thinner.res1.conv2.in_channels == 7 and thinner.res1.norm1.num_features == 7
    assert tuple(thinner.res1.pre_conv2.weight.shape) == (1, 1, 3, 3)
    assert torch.equal(thinner.res1.pre_conv2.weight, network.res1.pre_conv2.weight)
    for got, want in zip(_outputs(thinner, x), _outputs(network, x), strict=True):
        assert torch.allclose(got, want, atol=1e-4)


def test_gcanet_gate_and_image_layers_are_protected() -> None:
    network = _tiny("gcanet")
    x = trace_input(2, channels=4)
    assert protected_layers(network, build_graph(network, x), x) == ["deconv1", "gate"]
    groups, kept_whole = channel_groups(network, x)
    assert kept_whole == ["deconv1", "gate"]  # nothing refused as mis-traced
    trunk = next(g for g in groups if "conv3" in g.layers)
    assert {"res1.conv2", "res4.conv2", "res7.conv2", "gate", "deconv3"} <= set(trunk.layers)


class _NumpyFilter(nn.Module):
    """A user's layer that leaves PyTorch (works without gradients only)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(x.numpy().copy())


class _UserNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), _NumpyFilter())
        self.tail = nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(F.relu(self.body(F.relu(self.head(x))))) + x


def test_untraceable_layer_is_named() -> None:
    with pytest.raises(UsageError) as caught:
        build_graph(_UserNet().eval(), torch.rand(1, 3, 8, 8))
    message = str(caught.value)
    assert "layer body.1 (_NumpyFilter)" in message and "granularity unstructured" in message
    assert "\n" not in message
