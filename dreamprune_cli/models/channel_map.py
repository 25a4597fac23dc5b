"""The kept-channel map of a structured student, as its file records it.

A channel-pruned student's layers are thinner than the teacher's: Torch-Pruning removed whole
channels and renumbered the rest. The map says, for every convolution and linear layer of the
student (by its dotted module name, the teacher's name), which of the *teacher's* output and
input channels it kept, in the student's order::

    {"conv_i.0": LayerChannels(outputs=(0, 2, 3, ...), inputs=(0, 1, 5, ...)), ...}

so that student output channel ``j`` of that layer is teacher output channel
``outputs[j]`` (and likewise for inputs). A depth-pruned student keeps every channel: its map
is the identity (:func:`identity_map`).

The map is computed once, where the channels are removed
(:func:`dreamprune_cli.prune.channel_map.kept_channel_map`), carried on
:attr:`~dreamprune_cli.models.loading.LoadedModel.kept_channels`, written into the student's
safetensors metadata under :data:`KEPT_KEY` (JSON ``{layer: {"out": [...], "in": [...]}}``)
and read back on loading (:func:`read_channel_map`). Files written before the map existed
have no key: their students load as before, without a map.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import NamedTuple

from torch import nn

from dreamprune_cli.errors import UsageError

log = logging.getLogger(__name__)

KEPT_KEY = "dreamprune.channel.kept"
"""Safetensors metadata key of the kept-channel map (JSON)."""


class LayerChannels(NamedTuple):
    """The teacher's channels one student layer kept, in the student's order.

    Attributes:
        outputs: teacher output-channel index of each student output channel (ascending).
        inputs: teacher input-channel index of each student input channel (ascending).
    """

    outputs: tuple[int, ...]
    inputs: tuple[int, ...]


ChannelMap = dict[str, LayerChannels]
"""Student layer name -> the teacher channels it kept."""


def is_mapped_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a layer the map covers (any convolution, or linear)."""
    return isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))


def layer_widths(module: nn.Module) -> tuple[int, int]:
    """``(output channels, input channels)`` of a convolution or linear layer."""
    if isinstance(module, nn.Linear):
        return module.out_features, module.in_features
    return module.out_channels, module.in_channels


def mapped_layers(network: nn.Module) -> dict[str, nn.Module]:
    """Every convolution and linear layer of ``network`` by name, shared ones under each of
    their names (a student holds one copy per place)."""
    return {name: module for name, module in network.named_modules(remove_duplicate=False)
            if name and is_mapped_layer(module)}


def identity_map(network: nn.Module) -> ChannelMap:
    """The map of a network that kept every channel: ``range(width)`` for each layer."""
    return {name: LayerChannels(tuple(range(layer_widths(m)[0])),
                                tuple(range(layer_widths(m)[1])))
            for name, m in mapped_layers(network).items()}


def map_problems(network: nn.Module, kept: Mapping[str, LayerChannels]) -> list[str]:
    """Why ``kept`` does not describe ``network`` (empty when it does).

    The map must name exactly the network's convolution and linear layers, each with as many
    output and input indices as the layer has channels, ascending and non-negative.
    """
    layers = mapped_layers(network)
    problems = [f"{name}: not a convolution or linear layer of the network"
                for name in sorted(set(kept) - set(layers))]
    problems += [f"{name}: missing" for name in sorted(set(layers) - set(kept))]
    for name in sorted(set(kept) & set(layers)):
        out_width, in_width = layer_widths(layers[name])
        outputs, inputs = kept[name]
        for what, indices, width in (("output", outputs, out_width),
                                     ("input", inputs, in_width)):
            if len(indices) != width:
                problems.append(f"{name}: {len(indices)} {what} indices for {width} channels")
            elif any(i < 0 for i in indices) or list(indices) != sorted(set(indices)):
                problems.append(f"{name}: {what} indices not ascending and distinct")
    return problems


def channel_map_metadata(kept: Mapping[str, LayerChannels] | None) -> dict[str, str]:
    """File metadata recording ``kept`` under :data:`KEPT_KEY`; ``{}`` for ``None``."""
    if kept is None:
        return {}
    record = {name: {"out": list(channels.outputs), "in": list(channels.inputs)}
              for name, channels in kept.items()}
    return {KEPT_KEY: json.dumps(record, sort_keys=True, separators=(",", ":"))}


def read_channel_map(metadata: Mapping[str, str], where: str) -> ChannelMap | None:
    """The kept-channel map in a file's metadata; ``None`` when the file has none.

    Raises:
        UsageError: a record that is not a JSON object of layer names to
            ``{"out": [int, ...], "in": [int, ...]}``.
    """
    text = metadata.get(KEPT_KEY)
    if text is None:
        return None
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        record = None

    def indices(value: object) -> bool:
        return isinstance(value, list) and all(isinstance(i, int) and not isinstance(i, bool)
                                               for i in value)

    if not isinstance(record, dict) or not all(
            isinstance(name, str) and isinstance(entry, dict) and set(entry) == {"out", "in"}
            and indices(entry["out"]) and indices(entry["in"])
            for name, entry in record.items()):
        raise UsageError(f"{where}: metadata {KEPT_KEY} is not a JSON object of layer names to "
                         '{"out": [indices], "in": [indices]}')
    return {name: LayerChannels(tuple(entry["out"]), tuple(entry["in"]))
            for name, entry in record.items()}
