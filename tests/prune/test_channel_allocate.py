"""``dreamprune_cli.prune.channel.allocate``: channel groups, protected layers, kept counts."""

from __future__ import annotations

import pytest

from dreamprune_cli.errors import UsageError
from dreamprune_cli.prune.channel.allocate import (ChannelGroup, channel_groups, kept_for_ratio,
                                                   round_kept, trace_input)
from tests.helpers import tiny_loaded as _tiny


def test_pixel_attention_does_not_freeze_the_ffa_trunk() -> None:
    network = _tiny("ffa").network
    groups, protected = channel_groups(network, trace_input(1))
    trunk = [g for g in groups if "pre.0" in g.layers]
    assert len(trunk) == 1, "the trunk (first conv, residual chain) is one prunable group"
    assert {"g1.gp.0.conv1", "g1.gp.0.conv2", "g3.gp.2", "palayer.pa.0"} <= set(trunk[0].layers)
    assert trunk[0].channels == 16
    # the convolutions that write the image or a 1-channel map keep their outputs
    assert "post.1" in protected and "palayer.pa.2" in protected and "g1.gp.0.palayer.pa.2" \
        in protected and "pre.0" not in protected


def test_kept_for_ratio_uniform_and_global() -> None:
    groups = [ChannelGroup("a", ["a"], 10, list(range(10)), [float(i) for i in range(10)]),
              ChannelGroup("b", ["b"], 4, [0, 1, 2, 3], [0.5, 100.0, 100.0, 100.0])]
    assert kept_for_ratio(groups, "uniform", 0.5, 0.1) == [5, 2]
    assert kept_for_ratio(groups, "uniform", 1.0, 0.25) == [3, 1]  # at least ceil(0.25 n)
    # global: the 7 lowest scores of all 14 channels: 0..5 of a and 0.5 of b
    assert kept_for_ratio(groups, "global", 0.5, 0.1) == [4, 3]
    with pytest.raises(UsageError, match="channel"):
        kept_for_ratio(groups, "erk", 0.5, 0.1)


def test_round_kept_to_a_multiple_within_bounds() -> None:
    assert round_kept(13, 32, 1, 8) == 16  # 13 / 8 = 1.6 -> 2 blocks
    assert round_kept(11, 32, 1, 8) == 8  # 1.4 -> 1 block
    assert round_kept(3, 32, 10, 8) == 16  # at least `least` (10) rounded up to 16
    assert round_kept(30, 32, 1, 8) == 32  # 3.75 -> 4 blocks, the whole group
    assert round_kept(5, 8, 1, 8) == 5  # a group no wider than the multiple is left alone
    assert round_kept(40, 40, 1, 16) == 40  # kept whole stays whole
    assert round_kept(13, 32, 1, 1) == 13  # multiple 1: no rounding
