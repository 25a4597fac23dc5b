"""Channel (structured) pruning to a MAC target with Torch-Pruning's dependency graph.

Whole output channels are removed, together with the matching inputs of every layer that
consumes them: Torch-Pruning (``torch_pruning``) traces the network, couples the layers that
must lose the same channels (residual additions, concatenations, attention products) into
*groups*, ranks each group's channels with its importance criteria, and its pruning
functions perform the removal (:func:`~dreamprune_cli.prune.channel.graph.remove_channels`).
This module decides how many channels each
group keeps, so that the project's MAC counter (:func:`dreamprune_cli.flops.count_costs`)
reads the target.

The library's graph is built and corrected by :func:`dreamprune_cli.prune.channel.tracing.build_graph`
(channel-broadcast products, concatenations with untraced operands, channel-preserving
layers; groups found by the indexed search of
:func:`~dreamprune_cli.prune.channel.graph.indexed_graph_class`). The network is traced once:
each group records its layers' indices (:class:`~dreamprune_cli.prune.channel.graph.GroupStep`)
and every candidate is pruned from that record (:func:`apply_channel_counts`). A convolution that writes an output of the network (the restored image) or a
1-channel map keeps its output channels (:func:`protected_layers`); nothing else is kept
dense.

Allocators (the unstructured allocators' names where they make sense):

* ``uniform``: every group loses the same fraction ``r`` of its channels (the library's
  local pruning ratio); scalar ``r``.
* ``global``: one ranking of all groups' channels by their group-normalised L2 magnitude
  (the library's ``GroupMagnitudeImportance``); the lowest fraction ``r`` of all channels go.
* ``lamp``: the same with LAMP-normalised scores (the library's ``LAMPImportance``).
* ``adaptive``: the same with each channel scored by the drift it causes per MAC it saves,
  measured on calibration images (:mod:`dreamprune_cli.prune.channel.drift`); channels
  leave each group in the library's magnitude order.

Each finds its ``r`` by bisection on counted MACs; channel steps are coarse, so the result is
the closest reachable fraction, and :class:`ChannelPlan` says when it misses by more than
:data:`CHANNEL_TOLERANCE`.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.flops import count_costs, weights_on_meta
from dreamprune_cli.prune import CHANNEL_ALLOCATORS
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.prune.channel.graph import (ChannelGroup, group_steps,
                                                remove_channels)
from dreamprune_cli.prune.channel.drift import (DEFAULT_CHANNEL_LEVELS, ChannelDrift,
                                                adaptive_scores, measure_channel_drift)
from dreamprune_cli.prune.spec import matches
from dreamprune_cli.models.resize import unshare_modules
from dreamprune_cli.prune.channel.library import torch_pruning
from dreamprune_cli.prune.channel.tracing import CHANNELWISE_ATTRIBUTE, build_graph, failing_layer

log = logging.getLogger(__name__)

_CHANNELWISE_HINT = (f"; if its output channel i depends on input channel i alone and its "
                     f"parameters have no channel dimension, its class can declare "
                     f"{CHANNELWISE_ATTRIBUTE} = True")

CHANNEL_TOLERANCE = 0.01
"""Largest relative miss of the MAC target that is not reported as a rounding limit."""

def trace_input(size_multiple: int, channels: int = 3, side: int = 32) -> torch.Tensor:
    """A small ``(1, channels, S, S)`` tracing input, ``S`` a multiple of ``size_multiple``.

    Tracing records operations, not arithmetic, so a small input traces as well as a large
    one, and quickly.
    """
    side = max(side, size_multiple)
    side = math.ceil(side / size_multiple) * size_multiple
    return torch.rand(1, channels, side, side, generator=torch.Generator().manual_seed(0))


def _is_root(module: object) -> bool:
    return isinstance(module, (nn.modules.conv._ConvNd, nn.Linear))


def _single_channel_slice(node: object) -> bool:
    """Whether ``node`` takes one channel of its input (``gates[:, 1:2]``)."""
    grad_fn = node.grad_fn
    if grad_fn is None or not hasattr(grad_fn, "_saved_dim"):
        return False
    try:
        dim, start, end = grad_fn._saved_dim, grad_fn._saved_start, grad_fn._saved_end
        step = getattr(grad_fn, "_saved_step", 1)
    except (AttributeError, RuntimeError):
        return False
    return dim == 1 and start is not None and end is not None and end - start == step


def _layers_returning_outputs(network: nn.Module, example: torch.Tensor) -> set[str]:
    """Convolution and linear layers whose result (of any call) the network returns as is."""
    names = {module: name for name, module in network.named_modules() if _is_root(module)}
    producers: dict[object, str] = {}

    def record(module: nn.Module, _inputs: object, output: object) -> None:
        if isinstance(output, torch.Tensor) and output.grad_fn is not None:
            producers[output.grad_fn] = names[module]

    hooks = [module.register_forward_hook(record) for module in names]
    try:
        with torch.enable_grad():
            out = network(example)
    finally:
        for hook in hooks:
            hook.remove()
    found, stack = set(), [out]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            if item.grad_fn in producers:
                found.add(producers[item.grad_fn])
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return found


def protected_layers(network: nn.Module, graph: object, example: torch.Tensor) -> list[str]:
    """Layers whose output channels stay: those writing a network output or 1-channel maps.

    A layer writes an output when the network returns its result as is (PReNet's ablations,
    GCANet) or when a path from it reaches a traced output without passing another
    convolution or linear layer (e.g. ``post(x) + input``). It writes 1-channel maps when it
    has one output channel, or when its result is only read one channel at a time (GCANet's
    gate convolution: three gates ``g[:, 0:1]``, ``g[:, 1:2]``, ``g[:, 2:3]``).
    """
    tp = torch_pruning()
    names = {module: name for name, module in network.named_modules()}
    protected = _layers_returning_outputs(network, example)
    for module, name in names.items():
        if isinstance(module, nn.modules.conv._ConvNd) and module.out_channels == 1 \
                or isinstance(module, nn.Linear) and module.out_features == 1:
            protected.add(name)
    stack = []
    for node in graph.module2node.values():
        if _is_root(node.module) and node.module in names and node.outputs \
                and all(out.type == tp.ops.OPTYPE.SLICE and _single_channel_slice(out)
                        for out in node.outputs):
            protected.add(names[node.module])
        elif node.type == tp.ops.OPTYPE.OUTPUT:
            stack.append(node)
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        for source in node.inputs:
            if _is_root(source.module):
                if source.module in names:
                    protected.add(names[source.module])
            else:
                stack.append(source)
    return sorted(protected)


def channel_groups(network: nn.Module, example: torch.Tensor, allocator: str = "uniform",
                   exclude: Sequence[str] = ()) -> tuple[list[ChannelGroup], list[str]]:
    """The prunable channel groups of ``network`` and the layers protected from pruning.

    Args:
        network: the bare network (not modified).
        example: tracing input (:func:`trace_input`).
        allocator: ``lamp`` scores channels with LAMP normalisation, the others with the
            group-mean-normalised L2 magnitude (``adaptive`` replaces these scores by
            measured drift, :func:`~dreamprune_cli.prune.channel.drift.adaptive_scores`,
            and keeps the magnitude order).
        exclude: module-name globs whose output channels stay too (``--exclude``).

    Raises:
        UsageError: an exclusion glob that matches no convolution or linear layer.
    """
    tp = torch_pruning()
    network = copy.deepcopy(network).eval()
    unshare_modules(network)
    graph = build_graph(network, example)
    names = {module: name for name, module in network.named_modules()}
    roots = [name for name, module in network.named_modules() if _is_root(module)]
    for pattern in exclude:
        if not any(matches(name, [pattern]) for name in roots):
            raise UsageError(f"$exclude {pattern!r}: matches no Conv2d/ConvTranspose2d/Linear "
                             f"layer (their names look like: {', '.join(roots[:4])}, ...)")
    protected = protected_layers(network, graph, example)
    kept_names = set(protected) | {n for n in roots if matches(n, list(exclude))}
    modules = dict(network.named_modules())
    ignored = [modules[n] for n in sorted(kept_names)]
    importance = tp.importance.LAMPImportance(p=2) if allocator == "lamp" \
        else tp.importance.GroupMagnitudeImportance(p=2)
    ids = {id(module): name for name, module in network.named_modules()}
    ids.update({id(p): name for name, p in network.named_parameters()})
    groups = []
    for group in graph.get_all_groups(ignored_layers=ignored,
                                      root_module_types=[nn.modules.conv._ConvNd, nn.Linear]):
        root_module = group[0].dep.target.module
        if getattr(root_module, "groups", 1) > 1:
            log.debug("skipping the grouped convolution %s", names.get(root_module))
            continue
        if not getattr(group, "complete", True):  # index mappings that never close
            log.warning("channel pruning: the group of %s is kept whole (Torch-Pruning's "
                        "index mappings around it do not close: it mis-traces a channel "
                        "slice)", names.get(root_module))
            kept_names.add(names[root_module])
            continue
        try:
            with torch.no_grad():
                scores = importance(group)
        except (IndexError, RuntimeError) as exc:  # a group the library mis-traced
            log.warning("channel pruning: the group of %s is kept whole (Torch-Pruning "
                        "cannot score it: %s)", names.get(root_module), exc)
            kept_names.add(names[root_module])
            continue
        if scores is None:
            continue
        scores = scores.detach().float().cpu()
        layers = sorted({names[dep.target.module] for dep, _ in group
                         if dep.target.module in names and _is_root(dep.target.module)})
        order = torch.sort(scores, stable=True).indices.tolist()
        groups.append(ChannelGroup(root=names[root_module], layers=layers,
                                   channels=int(scores.numel()), order=order,
                                   scores=scores.tolist(), steps=tuple(group_steps(group, ids))))
    groups, refused = _working_groups(network, example, groups)
    return groups, sorted(kept_names | set(refused))


def _run(network: nn.Module, example: torch.Tensor) -> tuple[list[tuple[int, ...]] | None, str]:
    """The shapes of ``network``'s outputs on ``example``, or ``None`` and why it failed
    (naming the layer whose forward raised; with a hint when that layer is not PyTorch's)."""
    try:
        with torch.no_grad(), failing_layer(network) as where:
            out = network(example)
    except Exception as exc:  # a pruned network that no longer runs
        modules = dict(network.named_modules())
        message = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        if not where or where[-1] not in modules:
            return None, message
        cls = type(modules[where[-1]])
        hint = "" if cls.__module__.startswith("torch.") else _CHANNELWISE_HINT
        return None, f"in layer {where[-1]} ({cls.__name__}): {message}{hint}"
    flat: list[torch.Tensor] = []
    stack = [out]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            flat.append(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return [tuple(t.shape) for t in flat], ""


def shape_copy(network: nn.Module, example: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """A copy of ``network`` for trying candidates: on the meta device when it runs there.

    Candidates are only counted and checked for output shapes, which a network whose
    parameters are meta tensors (shapes without storage) gives without arithmetic and without
    a second copy of the weights in memory; pruning functions slice meta tensors alike.
    Networks with an operation that has no meta kernel get the real network (and ``example``;
    :func:`apply_channel_counts` copies it before pruning). Returns the copy and the example
    to run it on.
    """
    with weights_on_meta(network):
        skeleton = copy.deepcopy(network).eval()
    meta_example = example.to("meta")
    shapes, _ = _run(skeleton, meta_example)
    if shapes is not None and shapes == _run(network, example)[0]:
        return skeleton, meta_example
    log.debug("channel pruning: the network does not run on the meta device; trying "
              "candidates on real copies")
    return network, example


def _working_groups(network: nn.Module, example: torch.Tensor,
                    groups: list[ChannelGroup]) -> tuple[list[ChannelGroup], list[str]]:
    """The groups whose removal the network survives, and the roots of those it does not.

    Each group is thinned to half its channels (all together first, then halves of the list
    of groups where that fails, down to single groups): a group whose removal breaks the
    forward pass or changes an output's shape is one the library mis-traced (e.g. a channel
    slice it miscounts, a parameter outside standard layers whose channel dimension it
    guesses wrong); it is kept whole and named in the log with the layer that failed.
    """
    expected, _ = _run(network, example)
    trial, trial_example = shape_copy(network, example)
    reasons: dict[int, str] = {}

    def survives(kept: list[int]) -> str:
        """Why thinning to ``kept`` breaks the network ("" if it does not)."""
        try:
            thinner = apply_channel_counts(trial, groups, kept)
        except Exception as exc:  # the library's pruning functions failed to remove them
            return f"Torch-Pruning failed: {type(exc).__name__}: {exc}"
        shapes, reason = _run(thinner, trial_example)
        if shapes is None:
            return reason
        return "" if shapes == expected else f"output shapes {shapes}, expected {expected}"

    half = [max(1, g.channels - g.channels // 2) for g in groups]

    def failing(indices: list[int]) -> list[int]:
        """The groups among ``indices`` whose thinning breaks the network (halving)."""
        kept = [half[i] if i in indices else g.channels for i, g in enumerate(groups)]
        reason = survives(kept)
        if not reason:
            return []
        if len(indices) == 1:
            reasons[indices[0]] = reason
            return indices
        middle = len(indices) // 2
        found = failing(indices[:middle]) + failing(indices[middle:])
        if not found:  # only together do they fail: keep them all whole
            reasons.update({i: reason for i in indices})
        return found or indices

    bad = sorted(set(failing(list(range(len(groups)))))) if groups else []
    working = [g for i, g in enumerate(groups) if i not in bad]
    refused = [groups[i].root for i in bad]
    for i in bad:
        log.warning("channel pruning: the group of %s is kept whole: removing its channels "
                    "breaks the network (%s)", groups[i].root, reasons.get(i, "?"))
    return working, refused


def apply_channel_counts(network: nn.Module, groups: Sequence[ChannelGroup],
                         kept: Sequence[int]) -> nn.Module:
    """A copy of ``network`` in which group ``i`` keeps its ``kept[i]`` most important channels.

    No new trace: every group's layers lose the channels that follow its dropped root
    channels, by the steps recorded when the unpruned network was traced once
    (:func:`~dreamprune_cli.prune.channel.graph.remove_channels`). ``network`` must be the
    unpruned network the groups were found on (or a copy of it, e.g. on the meta device); the
    copy keeps its real weights when ``network`` has them.

    Raises:
        ValueError: ``kept`` and ``groups`` differ in length.
    """
    if len(kept) != len(groups):
        raise ValueError(f"kept: {len(kept)} counts for {len(groups)} groups")
    network = copy.deepcopy(network).eval()
    unshare_modules(network)
    remove_channels(network, [(group.steps, set(group.order[:group.channels - int(count)]))
                              for group, count in zip(groups, kept)])
    return network


@dataclass
class ChannelPlan:
    """The outcome of a channel allocation.

    Attributes:
        network: the thinner network.
        groups: the groups considered; ``kept[i]`` channels of ``groups[i]`` remain.
        protected: layers whose output channels were not touched.
        scalar: the allocator's pruning ratio ``r``.
        macs, macs_dense: counted MACs of the result and of the teacher.
        within_tolerance: whether the target was met within :data:`CHANNEL_TOLERANCE`.
        tried: MAC fractions evaluated during the bisection (for reports).
        drift: the groups' drift curves (``adaptive`` only).
    """

    network: nn.Module
    groups: list[ChannelGroup]
    kept: list[int]
    protected: list[str]
    scalar: float
    macs: int
    macs_dense: int
    within_tolerance: bool
    tried: list[tuple[float, float]] = field(default_factory=list)
    drift: ChannelDrift | None = None

    @property
    def macs_ratio(self) -> float:
        return self.macs / self.macs_dense


def _least_kept(group: ChannelGroup, min_keep: float) -> int:
    return max(1, math.ceil(min_keep * group.channels - 1e-9))


def round_kept(kept: int, channels: int, least: int, multiple: int) -> int:
    """``kept`` rounded to the nearest multiple of ``multiple`` within ``[least, channels]``.

    A group of at most ``multiple`` channels, or one kept whole, is left as it is; the
    rounded count is at least ``least`` rounded up to the multiple. CPU convolution kernels
    (oneDNN) work on blocks of 8-16 channels: on one thread a 3x3 convolution of 49 channels
    took as long as one of 64, one of 48 less than half (docs/RESULTS.md).
    """
    if multiple <= 1 or channels <= multiple or kept >= channels:
        return kept
    rounded = max(int(math.floor(kept / multiple + 0.5)) * multiple,
                  math.ceil(least / multiple) * multiple)
    return min(rounded, channels)


def _next_count(kept: int, channels: int, least: int, multiple: int, step: int) -> int | None:
    """The next count a refinement step reaches from ``kept``: one channel fewer (``step``
    -1) or more (+1), or the next multiple of ``multiple`` below or above for a group wider
    than it (up to ``channels``, the group kept whole); ``None`` outside ``[least, channels]``.
    """
    if multiple <= 1 or channels <= multiple:
        following = kept + step
    elif step < 0:
        following = (kept - 1) // multiple * multiple
        if following < math.ceil(least / multiple) * multiple:
            return None
    else:
        following = min(channels, (kept // multiple + 1) * multiple)
    return following if least <= following <= channels and following != kept else None


def kept_for_ratio(groups: Sequence[ChannelGroup], allocator: str, ratio: float,
                   min_keep: float, multiple: int = 1) -> list[int]:
    """Channels kept per group when the allocator prunes the fraction ``ratio``.

    ``uniform``: ``floor(ratio * n)`` channels leave every group of ``n``; ``global``,
    ``lamp`` and ``adaptive``: the ``round(ratio * total)`` lowest-scored channels of all
    groups leave (``adaptive``: groups scored by :func:`~dreamprune_cli.prune.channel.drift.
    adaptive_scores`). A group keeps at least ``max(1, ceil(min_keep * n))`` channels either
    way, and with ``multiple`` above 1 a multiple of it (:func:`round_kept`).
    """
    least = [_least_kept(g, min_keep) for g in groups]
    if multiple > 1:
        kept = kept_for_ratio(groups, allocator, ratio, min_keep)
        return [round_kept(k, g.channels, low, multiple)
                for k, g, low in zip(kept, groups, least)]
    if allocator == "uniform":
        return [max(low, g.channels - math.floor(ratio * g.channels + 1e-9))
                for g, low in zip(groups, least)]
    if allocator not in ("global", "lamp", "adaptive"):
        raise UsageError(f"$allocator {allocator!r} at $granularity channel: expected one of "
                         f"{', '.join(CHANNEL_ALLOCATORS)}")
    candidates = sorted((score, i) for i, g in enumerate(groups)
                        for score in sorted(g.scores)[:g.channels - least[i]])
    drop = min(len(candidates), round(ratio * sum(g.channels for g in groups)))
    kept = [g.channels for g in groups]
    for _, i in candidates[:drop]:
        kept[i] -= 1
    return kept


Candidate = tuple[tuple[int, ...], int]
"""Kept channels per group, and the MACs they keep."""


class _Candidates:
    """Counts the MACs of kept-channel candidates, each once: pruned on one copy of the network
    (shapes only where it runs on the meta device, :func:`shape_copy`), counted at
    ``input_size``, only the count kept."""

    def __init__(self, trial: nn.Module, groups: list[ChannelGroup],
                 input_size: tuple[int, ...]) -> None:
        self.trial, self.groups, self.input_size = trial, groups, input_size
        self.cache: dict[tuple[int, ...], int] = {}

    def __contains__(self, kept: tuple[int, ...]) -> bool:
        return kept in self.cache

    def count(self, kept: tuple[int, ...]) -> Candidate:
        if kept not in self.cache:
            self.cache[kept] = count_costs(apply_channel_counts(self.trial, self.groups, kept),
                                           self.input_size).macs
        return kept, self.cache[kept]


def _check_request(allocator: str, flops_target: float, calibration: torch.Tensor | None,
                   wrap: Callable[[nn.Module], nn.Module] | None, multiple: int) -> None:
    """Refuse what :func:`allocate_channels` cannot do, before any tracing."""
    if allocator not in CHANNEL_ALLOCATORS:
        raise UsageError(f"$allocator {allocator!r} at $granularity channel: expected one of "
                         f"{', '.join(CHANNEL_ALLOCATORS)}")
    if not (0.0 < flops_target <= 1.0):
        raise UsageError(f"$flops_target {flops_target!r}: expected a fraction of the MACs to "
                         "keep in (0, 1], e.g. 0.58")
    if allocator == "adaptive" and (calibration is None or wrap is None):
        raise ValueError("the adaptive channel allocator needs calibration images and wrap")
    if multiple < 1:
        raise ValueError(f"multiple: expected a channel count of at least 1, got {multiple}")


def _check_reachable(smallest: int, goal: float, dense: int, flops_target: float,
                     min_keep: float, model_name: str) -> None:
    """Refuse a target below what keeping the least of every group leaves (``smallest``)."""
    if smallest > goal * (1 + CHANNEL_TOLERANCE):
        reachable = math.ceil(smallest / dense * 1e4) / 1e4
        raise UsageError(
            f"$flops_target {flops_target:g} cannot be met for {model_name} at $granularity "
            f"channel: keeping at least {min_keep:g} of every group's channels ($min_keep) "
            f"and the layers that write the image or a 1-channel map leaves {reachable:.4f} "
            f"of the MACs; the smallest reachable F is {reachable:.4f}")


def _drift_scores(network: nn.Module, example: torch.Tensor, groups: list[ChannelGroup],
                  least: Sequence[int], wrap: Callable[[nn.Module], nn.Module],
                  calibration: torch.Tensor, keep_levels: Sequence[float],
                  progress: ProgressSink | None) -> tuple[list[ChannelGroup], ChannelDrift]:
    """``adaptive``: every group's drift curve measured on ``calibration`` (thinner copies of
    ``network`` built from the one trace's record), and the groups rescored by it
    (:func:`~dreamprune_cli.prune.channel.drift.adaptive_scores`)."""
    drift = measure_channel_drift(
        network, example, groups, least,
        lambda kept: apply_channel_counts(network, groups, kept), wrap,
        calibration, keep_levels, progress)
    return adaptive_scores(groups, drift), drift


def _bisect(evaluate: Callable[[float], Candidate], smallest: Candidate, goal: float,
            dense: int, iterations: int, tried: list[tuple[float, float]]
            ) -> tuple[tuple[float, Candidate], tuple[float, Candidate]]:
    """Bisection on the pruning ratio: the ratios and candidates around ``goal`` MACs,
    ``(low, high)`` with ``low`` keeping at least ``goal`` and ``high`` less (the same when
    the unpruned network already keeps at most ``goal``). Every ratio tried goes to
    ``tried`` as ``(ratio, MAC fraction)``."""
    full = evaluate(0.0)
    low, high = (0.0, full), (1.0, smallest)  # low keeps >= goal, high keeps < goal
    tried += [(0.0, full[1] / dense), (1.0, smallest[1] / dense)]
    if full[1] <= goal:
        return low, low
    for _ in range(iterations):
        if low[1][0] == high[1][0] or high[0] - low[0] < 1e-6:
            break
        middle = (low[0] + high[0]) / 2
        result = evaluate(middle)
        tried.append((middle, result[1] / dense))
        if result[1] >= goal:
            low = (middle, result)
        else:
            high = (middle, result)
    return low, high


def _refine(candidates: _Candidates, least: Sequence[int], multiple: int, goal: float,
            dense: int, above: Candidate, below: Candidate, best: Candidate, ratio: float,
            steps: int, evaluations: int, tried: list[tuple[float, float]]) -> Candidate:
    """Channel by channel from the bisection's two candidates, the best candidate found.

    The ratio's steps are coarse (one channel of a narrow group can be several percent of the
    MACs): from the candidate ``above`` the target, take single channels (or one multiple)
    from one group at a time, each time the step that lands closest to the target without
    passing below the tolerance; if that ends outside it, give them back from the candidate
    ``below`` the target the same way (the largest step that stays within the tolerance
    above). Each direction at most ``steps`` steps and ``evaluations`` newly counted
    candidates; ``best`` is replaced by any candidate closer to the target.
    """
    groups = candidates.groups
    kept, macs = best
    bounds = (goal * (1 - CHANNEL_TOLERANCE), goal * (1 + CHANNEL_TOLERANCE))
    for step, start in ((-1, above), (1, below)):
        current = start
        budget = evaluations
        for _ in range(steps):
            options = []
            for i, group in enumerate(groups):
                following = _next_count(current[0][i], group.channels, least[i], multiple,
                                        step)
                if following is None:
                    continue
                candidate = tuple(following if j == i else k
                                  for j, k in enumerate(current[0]))
                if candidate not in candidates:
                    budget -= 1
                    if budget < 0:
                        break
                option = candidates.count(candidate)
                if (option[1] >= bounds[0]) if step < 0 else (option[1] <= bounds[1]):
                    options.append(option)
            if not options:
                break
            current = (min if step < 0 else max)(options, key=lambda o: o[1])
            tried.append((ratio, current[1] / dense))
            if abs(current[1] - goal) < abs(macs - goal):
                kept, macs = current
            if bounds[0] <= current[1] <= bounds[1]:
                break
        if abs(macs - goal) <= CHANNEL_TOLERANCE * goal:
            break
    return kept, macs


def allocate_channels(network: nn.Module, example: torch.Tensor, input_size: tuple[int, ...],
                      flops_target: float, allocator: str, min_keep: float = 0.1,
                      exclude: Sequence[str] = (), model_name: str = "model",
                      iterations: int = 40, refine_groups: int = 64,
                      refine_steps: int = 16, refine_evaluations: int = 48,
                      calibration: torch.Tensor | None = None,
                      wrap: Callable[[nn.Module], nn.Module] | None = None,
                      keep_levels: Sequence[float] = DEFAULT_CHANNEL_LEVELS,
                      progress: ProgressSink | None = None, multiple: int = 1) -> ChannelPlan:
    """Prune a copy of ``network`` to ``flops_target`` of its MACs by whole channels.

    The network is traced once (:func:`channel_groups`). Bisection on the allocator's pruning
    ratio ``r`` in ``[0, 1]`` (:func:`_bisect`); every candidate is pruned (on a shape-only
    copy where the network runs on the meta device, :func:`shape_copy`) and counted with the
    project's counter at ``input_size``; only the chosen one is built from the real weights.
    When the two candidates around the target both miss it by more than 1% (narrow networks:
    one channel is a large step) and the network has at most ``refine_groups`` groups, single
    channels are then taken from one group at a time, each where the count lands closest to
    the target without passing 1% below it, and if that fails, given back one group at a time
    from the candidate below the target, each where it lands closest without passing 1%
    above it (:func:`_refine`: each direction at most ``refine_steps`` steps and
    ``refine_evaluations`` counted candidates). The returned plan is the candidate closest to
    the target. With ``multiple`` above 1 every group wider than it keeps a multiple of it
    (:func:`round_kept`; refinement steps of that many channels, so the target is met more
    coarsely).

    ``adaptive`` first measures every group's drift curve on ``calibration`` (``(B, 3, H, W)``
    in [0, 1]; the thinner copies are built from the real weights of ``network`` with the
    one trace's record and called through ``wrap``, bare network -> module taking RGB
    images) at ``keep_levels``, once the target is known to be reachable.

    Raises:
        UsageError: unknown allocator, a target outside (0, 1], no prunable group, or a target
            below the smallest reachable fraction (named).
        ValueError: ``adaptive`` without ``calibration`` or ``wrap``; ``multiple`` below 1.
    """
    _check_request(allocator, flops_target, calibration, wrap, multiple)
    dense = count_costs(network, input_size).macs_dense
    groups, protected = channel_groups(network, example, allocator, exclude)
    if not groups and flops_target < 1.0:
        raise UsageError(f"$flops_target {flops_target:g} cannot be met for {model_name} at "
                         "$granularity channel: no channel group may be pruned")
    # Candidates are pruned on one copy of the network (shapes only where it runs on the meta
    # device) and only their MACs are kept; the chosen one is then built from the real weights.
    candidates = _Candidates(shape_copy(network, example)[0], groups, input_size)
    goal = flops_target * dense
    least = [_least_kept(g, min_keep) for g in groups]
    # what ratio 1 keeps, whatever the allocator
    smallest = candidates.count(tuple(round_kept(low, g.channels, low, multiple)
                                      for g, low in zip(groups, least)))
    _check_reachable(smallest[1], goal, dense, flops_target, min_keep, model_name)
    drift = None
    if allocator == "adaptive" and flops_target < 1.0:
        assert calibration is not None and wrap is not None
        groups, drift = _drift_scores(network, example, groups, least, wrap, calibration,
                                      keep_levels, progress)
        candidates.groups = groups

    def evaluate(ratio: float) -> Candidate:
        return candidates.count(tuple(kept_for_ratio(groups, allocator, ratio, min_keep,
                                                     multiple)))

    tried: list[tuple[float, float]] = []
    low, high = _bisect(evaluate, smallest, goal, dense, iterations, tried)
    ratio, (kept, macs) = min((low, high), key=lambda c: abs(c[1][1] - goal))
    within = abs(macs - goal) <= CHANNEL_TOLERANCE * goal
    if not within and len(groups) <= refine_groups:
        kept, macs = _refine(candidates, least, multiple, goal, dense, low[1], high[1],
                             (kept, macs), ratio, refine_steps, refine_evaluations, tried)
        within = abs(macs - goal) <= CHANNEL_TOLERANCE * goal
    if not within:
        log.warning("--flops-target %g: whole channels reach %.4f or %.4f of the MACs of %s "
                    "here, not within 1%%; using %.4f (channel steps are coarse)",
                    flops_target, low[1][1] / dense, high[1][1] / dense, model_name,
                    macs / dense)
    pruned = apply_channel_counts(network, groups, kept)
    macs = count_costs(pruned, input_size).macs
    return ChannelPlan(network=pruned, groups=groups, kept=list(kept), protected=protected,
                       scalar=ratio, macs=macs, macs_dense=dense, within_tolerance=within,
                       tried=tried, drift=drift)
