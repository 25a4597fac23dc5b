"""The indexed group search and the trace-once channel removal agree with Torch-Pruning's own."""

from __future__ import annotations

import copy

import pytest
import torch
import torch_pruning as tp
from torch import nn

from dreamprune_cli.models.registry import build_model, get_model_info
from dreamprune_cli.models.resize import unshare_modules
from dreamprune_cli.prune.channel.graph import GroupStep, indexed_graph_class, remove_channels
from dreamprune_cli.prune.channel.allocate import (ChannelGroup, _next_count, allocate_channels,
                                                   apply_channel_counts, build_graph,
                                                   channel_groups, kept_for_ratio, round_kept,
                                                   shape_copy, trace_input)

ZOO = ["ffa", "hinet", "mprnet", "aganet", "durn_s", "durn_s_p"]
ROOTS = [nn.modules.conv._ConvNd, nn.Linear]


def _tiny(name: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    network = build_model(name, "tiny").eval()
    unshare_modules(network)
    return network, trace_input(get_model_info(name).size_multiple)


def _as_sets(group: object, network: nn.Module
             ) -> dict[tuple[int, object], set[tuple[int, int]]]:
    """Per layer of ``network`` and pruning function: its (index, root index) pairs.

    The library's own bookkeeping nodes (a new object per trace) are left out.
    """
    own = {id(m) for m in network.modules()} | {id(p) for p in network.parameters()}
    return {(id(item.dep.target.module), item.dep.handler):
            set(zip(item.idxs, item.root_idxs)) for item in group
            if id(item.dep.target.module) in own}


@pytest.mark.parametrize("name", ZOO)
def test_indexed_groups_equal_the_library_groups(name: str) -> None:
    network, example = _tiny(name)
    library = tp.DependencyGraph().build_dependency(network, example_inputs=example)
    indexed = indexed_graph_class()().build_dependency(network, example_inputs=example)
    assert isinstance(indexed, tp.DependencyGraph)
    ours = list(indexed.get_all_groups(root_module_types=ROOTS))
    theirs = list(library.get_all_groups(root_module_types=ROOTS))
    assert len(ours) == len(theirs) > 0
    for mine, reference in zip(ours, theirs):
        assert mine[0].dep.target.module is reference[0].dep.target.module
        if mine.complete:
            assert _as_sets(mine, network) == _as_sets(reference, network)
    # only HINet's half-instance-norm groups, whose slices the library mis-maps, do not close
    stopped = [_root_name(network, g) for g in ours if not g.complete]
    assert all(".conv_1" in name and "down_path" in name for name in stopped)
    assert bool(stopped) == (name == "hinet")


def _root_name(network: nn.Module, group: object) -> str:
    return {id(m): n for n, m in network.named_modules()}[id(group[0].dep.target.module)]


@pytest.mark.parametrize("name", ["ffa", "hinet", "mprnet", "durn_s"])
def test_trace_once_removal_equals_the_library_pruning_group_by_group(name: str) -> None:
    network, example = _tiny(name)
    groups, _ = channel_groups(network, example)
    kept = [max(1, g.channels - g.channels // 3) for g in groups]
    ours = apply_channel_counts(network, groups, kept)
    # the library's way: prune the groups one after another, the graph re-mapping indices
    reference = copy.deepcopy(network)
    graph = build_graph(reference, example)
    modules = dict(reference.named_modules())
    for group, count in zip(groups, kept):
        drop = sorted(group.order[:group.channels - count])
        root = modules[group.root]
        graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels,
                                drop).prune()
    mine, theirs = ours.state_dict(), reference.state_dict()
    assert mine.keys() == theirs.keys()
    assert any(mine[k].shape != v.shape for k, v in network.state_dict().items())
    for key, tensor in theirs.items():
        assert torch.equal(mine[key], tensor), key
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        mine_out, their_out = ours(x), reference(x)
    if isinstance(mine_out, torch.Tensor):
        mine_out, their_out = [mine_out], [their_out]
    assert len(mine_out) == len(their_out)
    for a, b in zip(mine_out, their_out):
        assert torch.equal(a, b)


def test_shape_copy_prunes_on_the_meta_device_like_the_real_network() -> None:
    network, example = _tiny("hinet")
    groups, _ = channel_groups(network, example)
    trial, trial_example = shape_copy(network, example)
    assert trial_example.is_meta and all(p.is_meta for p in trial.parameters())
    assert not any(p.is_meta for p in network.parameters())  # the original keeps its weights
    kept = [max(1, g.channels // 2) for g in groups]
    real = apply_channel_counts(network, groups, kept).state_dict()
    meta = apply_channel_counts(trial, groups, kept).state_dict()
    assert {k: v.shape for k, v in real.items()} == {k: v.shape for k, v in meta.items()}


def test_remove_channels_takes_the_union_per_layer_in_original_numbering() -> None:
    conv = nn.Sequential(nn.Conv2d(4, 6, 1))
    before = conv[0].weight.detach().clone()
    prune_out = tp.pruner.function.prune_conv_out_channels
    # two groups feeding one layer's outputs (as a concatenation does): 0-2 and 3-5
    first = [GroupStep("0", prune_out, (0, 1, 2), (0, 1, 2))]
    second = [GroupStep("0", prune_out, (3, 4, 5), (0, 1, 2))]
    remove_channels(conv, [(first, {1}), (second, {0, 2})])
    assert conv[0].out_channels == 3
    assert torch.equal(conv[0].weight, before[[0, 2, 4]])


def test_remove_channels_slices_a_bare_parameter_along_its_dimension() -> None:
    holder = nn.Module()
    holder.scale = nn.Parameter(torch.arange(12.0).view(1, 4, 3))
    step = GroupStep("scale", None, (0, 1, 2, 3), (0, 1, 2, 3), dim=1)  # type: ignore[arg-type]
    remove_channels(holder, [([step], {1, 3})])
    assert isinstance(holder.scale, nn.Parameter)
    assert torch.equal(holder.scale, torch.arange(12.0).view(1, 4, 3)[:, [0, 2]])


@pytest.mark.parametrize(("kept", "channels", "least", "multiple", "expected"), [
    (49, 64, 7, 16, 48),    # nearest multiple
    (57, 64, 7, 16, 64),    # rounds up to the whole group
    (3, 64, 7, 16, 16),     # never below the least count, rounded up
    (64, 64, 7, 16, 64),    # a group kept whole stays whole
    (7, 12, 2, 16, 7),      # a group no wider than the multiple is not rounded
    (49, 64, 7, 1, 49),     # multiple 1: unchanged
    (41, 100, 10, 16, 48),  # 100 is no multiple of 16: 48 of 100
])
def test_round_kept(kept: int, channels: int, least: int, multiple: int, expected: int) -> None:
    assert round_kept(kept, channels, least, multiple) == expected


def test_kept_for_ratio_keeps_multiples_of_the_channel_multiple() -> None:
    groups = [ChannelGroup("a", ["a"], 64, list(range(64)), [float(i) for i in range(64)]),
              ChannelGroup("b", ["b"], 8, list(range(8)), [float(i) for i in range(8)])]
    assert kept_for_ratio(groups, "uniform", 0.25, 0.1) == [48, 6]
    assert kept_for_ratio(groups, "uniform", 0.25, 0.1, multiple=16) == [48, 6]
    assert kept_for_ratio(groups, "uniform", 0.3, 0.1) == [45, 6]
    assert kept_for_ratio(groups, "uniform", 0.3, 0.1, multiple=16) == [48, 6]
    assert kept_for_ratio(groups, "uniform", 0.4, 0.1, multiple=16) == [32, 5]


@pytest.mark.parametrize(("kept", "channels", "least", "multiple", "step", "expected"), [
    (48, 64, 7, 16, 1, 64),     # up to the next multiple
    (48, 64, 7, 16, -1, 32),    # down to the previous one
    (16, 64, 7, 16, -1, None),  # 0 would be below least rounded up (16)
    (64, 100, 10, 16, 1, 80),
    (96, 100, 10, 16, 1, 100),  # the group kept whole is the last step up
    (100, 100, 10, 16, -1, 96),
    (5, 8, 1, 16, -1, 4),       # no wider than the multiple: single channels
    (8, 8, 1, 1, 1, None),      # already whole
    (1, 8, 1, 1, -1, None),     # already at least
])
def test_refinement_steps_move_by_the_channel_multiple(kept: int, channels: int, least: int,
                                                       multiple: int, step: int,
                                                       expected: int | None) -> None:
    assert _next_count(kept, channels, least, multiple, step) == expected


def test_adaptive_allocation_with_a_multiple_keeps_real_weights() -> None:
    """Drift measured on copies with the real weights; every wider group keeps a multiple;
    the plan's student is the trace-once removal from the real network."""
    from dreamprune_cli.models.adapter import RestorationAdapter
    from dreamprune_cli.models.registry import get_model_info as info_of

    network, example = _tiny("ffa")
    info = info_of("ffa")
    images = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    plan = allocate_channels(network, example, (3, 32, 32), 0.6, "adaptive", multiple=4,
                             calibration=images, wrap=lambda n: RestorationAdapter(n, info),
                             keep_levels=(0.5,))
    assert plan.drift is not None and len(plan.drift.groups) == len(plan.groups)
    assert any(d > 0 for curve in plan.drift.groups for d in curve.drift[1:])  # real weights
    for group, kept in zip(plan.groups, plan.kept):
        assert kept == group.channels or group.channels <= 4 or kept % 4 == 0
    again = apply_channel_counts(network, plan.groups, plan.kept)
    with torch.no_grad():
        assert torch.equal(plan.network(example), again(example))
    assert all(p.device.type == "cpu" for p in plan.network.parameters())
