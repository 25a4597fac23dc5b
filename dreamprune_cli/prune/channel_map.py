"""Which teacher channels each layer of a structured student kept: computed once, at the cut.

Torch-Pruning removes channels physically, so a thinner student no longer knows which of
the teacher's channels it holds. :func:`kept_channel_map` computes that map from the very
record the removal uses (the groups' steps and the channels each group drops, through
:func:`~dreamprune_cli.prune.channel.graph.removed_indices`, the helper
:func:`~dreamprune_cli.prune.channel.graph.remove_channels` itself calls), so the map and the
removal cannot disagree. The channel planner stores it on the student
(:attr:`~dreamprune_cli.models.loading.LoadedModel.kept_channels`), the student file records
it (``dreamprune.channel.kept``, :mod:`dreamprune_cli.models.channel_map`) and loading reads
it back.

:func:`teacher_channels` is the public reader: ``{layer: (out_idx, in_idx)}`` of any student,
for code that compares a student's layer with the teacher's (layer-wise reconstruction,
:mod:`dreamprune_cli.prune.reconstruct`; feature distillation).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.channel_map import (ChannelMap, LayerChannels, identity_map,
                                              layer_widths, mapped_layers)
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.prune.channel.graph import ChannelGroup, removed_indices

__all__ = ["ChannelMap", "LayerChannels", "kept_channel_map", "teacher_channels"]


def _depthwise(module: nn.Module) -> bool:
    """A convolution whose every output channel reads its own input channel alone."""
    return isinstance(module, nn.modules.conv._ConvNd) and module.groups > 1 \
        and module.groups == module.in_channels == module.out_channels


def kept_channel_map(network: nn.Module, groups: Sequence[ChannelGroup],
                     kept: Sequence[int]) -> ChannelMap:
    """The kept-channel map of the student that ``apply_channel_counts(network, groups,
    kept)`` builds.

    Args:
        network: the unpruned network the groups were found on (the teacher, or a
            depth-pruned teacher; layer names and widths are read from it).
        groups: the channel groups (:func:`~dreamprune_cli.prune.channel.allocate.channel_groups`).
        kept: channels kept per group (the ``kept[i]`` most important of ``groups[i]``).

    Returns:
        For every convolution and linear layer, the ascending indices (in ``network``'s
        numbering) of the output and input channels that survive; layers no group touches
        keep ``range(width)``. A depthwise convolution that loses output channels loses the
        same inputs (Torch-Pruning's depthwise pruner).

    Raises:
        ValueError: ``kept`` and ``groups`` differ in length, or a step on a convolution or
            linear layer whose pruning function is neither an output- nor an input-channel
            pruner.
    """
    if len(kept) != len(groups):
        raise ValueError(f"kept: {len(kept)} counts for {len(groups)} groups")
    layers = mapped_layers(network)
    removed: dict[str, tuple[set[int], set[int]]] = {name: (set(), set()) for name in layers}
    union = removed_indices([(group.steps, set(group.order[:group.channels - int(count)]))
                             for group, count in zip(groups, kept)])
    for (target, prune, dim), indices in union.items():
        if dim is not None or target not in layers:  # bare parameters, norms, activations
            continue
        kind = getattr(prune, "__name__", "")
        out_removed, in_removed = removed[target]
        if kind == "prune_out_channels":
            out_removed.update(indices)
            if _depthwise(layers[target]):
                in_removed.update(indices)
        elif kind == "prune_in_channels":
            in_removed.update(indices)
        else:
            raise ValueError(f"{target}: pruning function {prune!r} removes neither output "
                             "nor input channels")
    result: ChannelMap = {}
    for name, module in layers.items():
        out_width, in_width = layer_widths(module)
        out_removed, in_removed = removed[name]
        result[name] = LayerChannels(
            tuple(i for i in range(out_width) if i not in out_removed),
            tuple(i for i in range(in_width) if i not in in_removed))
    return result


def teacher_channels(student: LoadedModel) -> ChannelMap:
    """``{layer: (out_idx, in_idx)}``: the teacher channels each student layer kept.

    Student output channel ``j`` of ``layer`` is the teacher's output channel
    ``out_idx[j]`` of the layer of the same name (likewise inputs); every convolution and
    linear layer of the student is named. A student made by channel pruning (``channel``,
    ``depth+channel``) carries the map recorded at the cut (also in its file since
    ``dreamprune.channel.kept`` exists); a depth-pruned or masked student, or a teacher,
    kept every channel of its layers: the identity.

    Raises:
        UsageError: a channel-pruned student without a map (a file written before the map
            was recorded: prune again to get one).
    """
    if student.kept_channels is not None:
        return dict(student.kept_channels)
    if student.granularity in ("channel", "depth+channel"):
        where = f" ({student.weights})" if student.weights is not None else ""
        raise UsageError(f"the {student.name} student{where} was channel-pruned before its "
                         "files recorded which teacher channels it kept "
                         "(dreamprune.channel.kept): prune the teacher again")
    return identity_map(student.network)
