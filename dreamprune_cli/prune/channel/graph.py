"""Torch-Pruning's dependency graph, with a group search that scales to full-size networks.

Torch-Pruning (``torch_pruning``, 1.6) finds the layers coupled to a root layer's output
channels by walking its dependency graph; before each step it checks whether that step is
already in the group by scanning the whole group and comparing index lists
(``Group.has_pruning_op``). The work grows with the square of the group's size. The groups of
the official HINet span its long residual chains with many channels each: on the project's
2-core machine ``get_all_groups`` spent 80 of its first 90 seconds in that scan and had found
12 groups by then, and the old planner repeated the whole search for every pruned candidate.

:func:`indexed_graph_class` returns a ``DependencyGraph`` whose ``get_pruning_group`` walks the
same dependencies with the same index mappings but remembers the steps taken in a set, so each
step is checked in constant time. The group it returns (steps merged per layer and pruning
function, plain and root indices) holds the same layers and indices as the library's.

:func:`group_steps` turns a full-width group into plain records (layer name, pruning function,
indices, root indices) so that channels can later be removed from any copy of the network
without tracing it again (:func:`remove_channels`); :class:`ChannelGroup` is a root layer's
group with its channel order and scores, as the planner and the drift measurement read it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from numbers import Number

import torch
from torch import nn

from dreamprune_cli.prune.channel.library import torch_pruning

log = logging.getLogger(__name__)


STEPS_PER_DEPENDENCY = 2
"""A group search stops after this many steps per dependency edge of the graph.

A group whose index mappings are consistent reaches each layer with one index list per
path, and in the zoo's tiny variants took at most 0.5 steps per edge. The library maps
HINet's channel slices (``out[:, :n]``, half instance norm) wrongly, so that each pass
around a residual loop yields new index lists: those groups grow without closing (2851
steps for 464 edges on the tiny HINet, far more on the official one) and would be refused
as mis-traced anyway. A stopped group is returned with ``complete = False``."""


@functools.cache
def indexed_graph_class() -> type:
    """A ``torch_pruning.DependencyGraph`` subclass whose group search is linear in its size."""
    tp = torch_pruning()
    helpers = tp._helpers

    class IndexedDependencyGraph(tp.DependencyGraph):
        """``DependencyGraph`` whose :meth:`get_pruning_group` checks visited steps in a set.

        Its groups carry ``complete``: ``False`` when the search stopped at
        :data:`STEPS_PER_DEPENDENCY` steps per edge (index mappings that do not close).
        """

        def get_pruning_group(self, module: nn.Module, pruning_fn: Callable,
                              idxs: Iterable[int] | int):
            """The group of ``module`` pruned by ``pruning_fn`` at ``idxs`` (library semantics).

            Raises:
                ValueError: ``module`` is not in the traced graph.
            """
            if module not in self.module2node:
                raise ValueError(f"Module {module} is not in the dependency graph.")
            if isinstance(module, tp.ops.TORCH_CONV) and module.groups == module.out_channels \
                    and module.out_channels > 1:
                pruning_fn = tp.pruner.function.prune_depthwise_conv_out_channels
            if isinstance(idxs, Number):
                idxs = [idxs]
            start = [helpers._HybridIndex(idx=i, root_idx=i) for i in idxs]
            tp.dependency.index_mapping.update_index_mapping(self)
            root = self.module2node[module]
            first = tp.dependency.Dependency(pruning_fn, pruning_fn, source=root, target=root)
            steps = [(first, start)]
            seen = {(id(root), pruning_fn, tuple(start))}
            stack = [(first, start)]
            limit = STEPS_PER_DEPENDENCY * sum(len(n.dependencies)
                                               for n in self.module2node.values())
            complete = True
            while stack:
                if len(steps) > limit:
                    complete = False
                    break
                dep, indices = stack.pop()
                for following in dep.target.dependencies:
                    if not following.is_triggered_by(dep.handler):
                        continue
                    mapped = indices
                    for mapping in following.index_mapping:
                        if mapping is not None:
                            mapped = mapping(mapped)
                    if len(mapped) == 0:
                        continue
                    key = (id(following.target), following.handler, tuple(mapped))
                    if key in seen:
                        continue
                    seen.add(key)
                    steps.append((following, mapped))
                    stack.append((following, mapped))
            log.debug("group of %s: %d steps%s", type(module).__name__, len(steps),
                      "" if complete else " (stopped: index mappings that do not close)")
            # merge the steps per layer and pruning function, the first step's index of each
            # channel winning (the library's Group.add_and_merge, with dicts)
            ignored = {id(p) for p in self.ignored_params}
            merged_steps: dict[tuple[int, Callable], tuple[object, dict[int, object]]] = {}
            for dep, indices in steps:
                if isinstance(dep.target.module, nn.Parameter) \
                        and id(dep.target.module) in ignored:
                    continue
                _, by_index = merged_steps.setdefault((id(dep.target), dep.handler), (dep, {}))
                for index in indices:
                    by_index.setdefault(index.idx, index)
            merged = tp.dependency.Group()
            merged._DG = self
            merged.complete = complete
            for dep, by_index in merged_steps.values():
                hybrid = list(by_index.values())
                item = helpers.GroupItem(dep, helpers.to_plain_idxs(hybrid))
                item.root_idxs = helpers.to_root_idxs(hybrid)
                merged._group.append(item)
            return merged

    return IndexedDependencyGraph


@dataclass(frozen=True)
class GroupStep:
    """One layer's share of a channel group, as plain data.

    Attributes:
        target: dotted name of the module (or parameter) in the network.
        prune: the library's pruning function for that layer and dimension
            (``fn(module, indices)``).
        indices: the layer's channel indices (in its own, unpruned numbering).
        root_indices: for each of ``indices``, the root layer's output channel it follows.
        dim: for a bare ``nn.Parameter`` target (one no layer wraps), the dimension that
            loses the channels; ``None`` for a module.
    """

    target: str
    prune: Callable
    indices: tuple[int, ...]
    root_indices: tuple[int, ...]
    dim: int | None = None


@dataclass
class ChannelGroup:
    """Output channels of a root layer and every layer coupled to them.

    Attributes:
        root: dotted name of the layer whose output channels define the group.
        layers: names of the coupled layers (for reports).
        channels: channels in the group.
        order: channel indices, least important first.
        scores: importance of each channel (index order), normalised within the group.
        steps: every coupled layer's indices per root channel, from the one trace of the
            unpruned network
            (:func:`~dreamprune_cli.prune.channel.allocate.apply_channel_counts` removes channels with
            them).
    """

    root: str
    layers: list[str]
    channels: int
    order: list[int]
    scores: list[float]
    steps: tuple[GroupStep, ...] = ()


def group_steps(group: object, names: Mapping[int, str]) -> list[GroupStep]:
    """The steps of a full-width library group that touch ``names`` (``id(object) -> name``).

    Steps on the library's own bookkeeping nodes (concatenation, split, element-wise
    operations) change no tensor of the network and are left out.
    """
    steps = []
    for item in group:
        name = names.get(id(item.dep.target.module))
        if name is None:
            continue
        target = item.dep.target
        dim = getattr(target, "pruning_dim", None) \
            if isinstance(target.module, nn.Parameter) else None
        steps.append(GroupStep(target=name, prune=item.dep.handler,
                               indices=tuple(int(i) for i in item.idxs),
                               root_indices=tuple(int(i) for i in item.root_idxs), dim=dim))
    return steps


def removed_indices(removals: Iterable[tuple[Iterable[GroupStep], set[int]]]
                    ) -> dict[tuple[str, Callable, int | None], set[int]]:
    """What :func:`remove_channels` removes: per ``(target, pruning function, dim)``, the
    union over all groups ``(steps, drop)`` of the indices (in the layer's unpruned
    numbering) that follow the dropped root channels ``drop``.

    :func:`~dreamprune_cli.prune.channel_map.kept_channel_map` reads the same record, so
    the kept-channel map and the removal cannot disagree.
    """
    union: dict[tuple[str, Callable, int | None], set[int]] = {}
    for steps, drop in removals:
        if not drop:
            continue
        for step in steps:
            chosen = {i for i, root in zip(step.indices, step.root_indices) if root in drop}
            if chosen:
                union.setdefault((step.target, step.prune, step.dim), set()).update(chosen)
    return union


def remove_channels(network: nn.Module, removals: Iterable[tuple[Iterable[GroupStep], set[int]]]
                    ) -> None:
    """Remove, in place, the root channels ``drop`` of each group ``(steps, drop)``.

    Every layer loses, along each pruned dimension, the union of its indices over all groups,
    in its original numbering, so the groups can be applied together from one trace of the
    unpruned network (the library instead re-traces the index mappings between groups).
    A bare ``nn.Parameter`` target is replaced on its module by its kept slice along
    ``GroupStep.dim``.

    Raises:
        KeyError: a step names a module or parameter that ``network`` does not have.
    """
    modules = dict(network.named_modules())
    for (target, prune, dim), indices in removed_indices(removals).items():
        if target in modules:
            prune(modules[target], sorted(indices))
            continue
        owner_name, _, attribute = target.rpartition(".")
        owner = modules[owner_name]
        tensor = getattr(owner, attribute)
        keep = torch.tensor([i for i in range(tensor.shape[dim]) if i not in indices],
                            dtype=torch.long, device=tensor.device)
        setattr(owner, attribute, nn.Parameter(tensor.detach().index_select(dim, keep),
                                               requires_grad=tensor.requires_grad))
