"""The adaptive allocator at channel granularity: drift curves per group, marginal scores."""

from __future__ import annotations

import math

import pytest
import torch

from dreamprune_cli.models.adapter import RestorationAdapter
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.models.registry import build_model, get_model_info, model_config
from dreamprune_cli.prune.channel.drift import (ChannelDrift, GroupDrift, adaptive_scores,
                                                level_counts, lower_hull_slopes,
                                                measure_channel_drift)
from dreamprune_cli.prune.channel.plan import prune_channels
from dreamprune_cli.prune.channel.allocate import (CHANNEL_TOLERANCE, ChannelGroup,
                                                   apply_channel_counts, channel_groups,
                                                   kept_for_ratio, trace_input)


def _tiny(name: str) -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(name=name, info=get_model_info(name),
                       network=build_model(name, "tiny").eval(),
                       config=model_config(name, "tiny"), weights=None)


def test_level_counts_round_dedupe_and_include_the_least() -> None:
    assert level_counts(16, 2, (0.75, 0.5, 0.25)) == [12, 8, 4, 2]
    assert level_counts(2, 1, (0.75, 0.5, 0.25)) == [1]  # round(1.5) = 2 is the full group
    assert level_counts(10, 3, (0.75, 0.5, 0.25)) == [8, 5, 3]  # 0.25 -> 2, below the least
    assert level_counts(1, 1, (0.5,)) == []  # nothing to remove


def test_lower_hull_slopes_by_hand() -> None:
    # (1, 1) lies above the chord from (0, 0) to (2, 1.5): the hull skips it
    assert lower_hull_slopes([0, 1, 2, 4], [0.0, 1.0, 1.5, 4.0]) == \
        pytest.approx([0.75, 0.75, 1.25, 1.25])
    # already convex: the slopes of the segments, one per channel
    assert lower_hull_slopes([0, 2, 3], [0.0, 1.0, 3.0]) == pytest.approx([0.5, 0.5, 2.0])
    assert lower_hull_slopes([0], [0.0]) == []


def test_adaptive_scores_rank_by_drift_per_mac() -> None:
    """Group a: 4 channels, drift 0.4 when 2 leave (0.2 per channel), 10 MACs per channel ->
    0.02 per MAC (normalised by the largest drift, 0.8); group b: 2 channels, drift 0.8 when
    1 leaves, 100 MACs per channel -> 0.008 per MAC: b's channel goes first."""
    groups = [ChannelGroup("a", ["a"], 4, [3, 2, 1, 0], [1.0, 1.0, 1.0, 1.0]),
              ChannelGroup("b", ["b"], 2, [1, 0], [1.0, 1.0])]
    drift = ChannelDrift(groups=[GroupDrift("a", 4, [4, 3, 2], [0.0, 0.2, 0.4], [0, 10, 20]),
                                 GroupDrift("b", 2, [2, 1], [0.0, 0.8], [0, 100])],
                         seconds=0.0, images=1, image_size=(8, 8), evaluations=3)
    scored = adaptive_scores(groups, drift)
    a, b = scored
    # channels leave a in its order 3, 2: each scores 0.25 / 10; the kept ones score above
    assert a.scores[3] == pytest.approx(0.025) and a.scores[2] == pytest.approx(0.025)
    assert min(a.scores[0], a.scores[1]) > 0.025
    assert b.scores[1] == pytest.approx(0.01) and b.scores[0] > 0.01
    assert a.order == groups[0].order  # the library's order is kept
    # one channel of six leaves: b's (lowest drift per MAC), then a's two
    assert kept_for_ratio(scored, "adaptive", 1 / 6, 0.5) == [4, 1]
    assert kept_for_ratio(scored, "adaptive", 0.5, 0.5) == [2, 1]


def test_a_group_that_saves_no_macs_goes_last() -> None:
    groups = [ChannelGroup("a", ["a"], 2, [0, 1], [0.0, 0.0]),
              ChannelGroup("b", ["b"], 2, [0, 1], [0.0, 0.0])]
    drift = ChannelDrift(groups=[GroupDrift("a", 2, [2, 1], [0.0, 0.0], [0, 0]),
                                 GroupDrift("b", 2, [2, 1], [0.0, 1.0], [0, 5])],
                         seconds=0.0, images=1, image_size=(8, 8), evaluations=2)
    a, b = adaptive_scores(groups, drift)
    assert all(math.isfinite(v) for v in a.scores + b.scores)
    assert kept_for_ratio([a, b], "adaptive", 0.25, 0.5) == [2, 1]


def test_measured_drift_is_the_thinner_network_output_error() -> None:
    """The curve's first point costs nothing; every other is the mean squared difference
    between the teacher and the copy thinned in that group alone, and saves MACs."""
    loaded = _tiny("ffa")
    example = trace_input(1)
    groups, _ = channel_groups(loaded.network, example)
    groups = groups[:2]
    images = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    wrap = lambda net: RestorationAdapter(net, loaded.info)  # noqa: E731
    prune = lambda kept: apply_channel_counts(loaded.network, groups, kept)  # noqa: E731
    drift = measure_channel_drift(loaded.network, example, groups, [1, 1], prune, wrap, images,
                                  keep_levels=(0.5,))
    first = drift.groups[0]
    assert first.kept[0] == groups[0].channels and first.drift[0] == 0.0
    assert first.kept[1:] == level_counts(groups[0].channels, 1, (0.5,))
    kept = [first.kept[1], groups[1].channels]
    with torch.no_grad():
        expected = float((wrap(prune(kept))(images) - wrap(loaded.network)(images))
                         .pow(2).mean())
    assert first.drift[1] == pytest.approx(expected, rel=1e-6)
    assert all(s > 0 for c in drift.groups for s in c.macs_saved[1:])
    assert drift.evaluations == sum(len(c.kept) - 1 for c in drift.groups)


def test_adaptive_channel_pruning_meets_the_target() -> None:
    teacher = _tiny("durn_s_p")
    result = prune_channels(teacher, 0.6, "adaptive", flops_size=32, calibration_count=2,
                            calibration_size=32)
    assert result.allocator == "adaptive" and result.granularity == "channel"
    assert result.macs_ratio == pytest.approx(0.6, rel=CHANNEL_TOLERANCE)
    drift = result.details["drift"]
    assert drift["images"] == 2 and drift["image_size"] == [32, 32]
    assert set(drift["groups"]) == {g["root"] for g in result.details["groups"]}


def test_adaptive_needs_calibration() -> None:
    from dreamprune_cli.prune.channel.allocate import allocate_channels
    loaded = _tiny("ffa")
    with pytest.raises(ValueError, match="calibration"):
        allocate_channels(loaded.network, trace_input(1), (3, 32, 32), 0.6, "adaptive")
