"""``dreamprune_cli.prune.depth.search``: the greedy path by hand-counted costs, states."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dreamprune_cli.flops import count_costs
from dreamprune_cli.models.loading import load_model
from dreamprune_cli.prune.depth.candidates import find_depth_space
from dreamprune_cli.prune.depth.search import Cut, DepthSearch, DepthState, greedy_path
from tests.helpers import KnownCosts
from tests.helpers import toy_loaded as _loaded


def _search(network: nn.Module, side: int = 8) -> DepthSearch:
    loaded = _loaded(network)
    return DepthSearch(teacher=loaded.network, wrap=lambda n: n,
                       calibration=torch.rand(2, 3, side, side,
                                              generator=torch.Generator().manual_seed(0)),
                       input_size=(3, side, side))


def test_greedy_path_reaches_a_target_with_hand_counted_costs() -> None:
    torch.manual_seed(0)
    network = KnownCosts()
    # per position: head 32, small 72, mid 584, big 1608, tail 27 -> dense 2323
    assert count_costs(network, (3, 8, 8)).macs_dense == 2323 * 64
    # make the big block cheap to remove (near-zero branch) and the others costly
    with torch.no_grad():
        network.big.conv.weight.mul_(1e-4)
        network.big.conv.bias.zero_()
    search = _search(network)
    space = find_depth_space(_loaded(network), torch.rand(1, 3, 8, 8))
    path = greedy_path(search, space, target=0.4)
    assert [step.cut for step in path[:2]] == ["-", "big"]
    assert path[1].macs_ratio == pytest.approx((2323 - 1608) / 2323)
    assert path[-1].macs_ratio <= 0.4 and path[-2].macs_ratio > 0.4
    assert path[1].mse < 1e-6 and path[1].fidelity_db > 60


def test_states_remove_and_count_stages() -> None:
    prenet = load_model("prenet", variant="tiny", use_bundled=False)
    state = DepthState(removed=(("res_conv1", "branch"),), repeats=(("stages", 2),))
    network = state.apply(prenet.network)
    assert network.stages == 2 and prenet.network.stages == 3  # the teacher is untouched
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(network.res_conv1(x), torch.zeros_like(x))
    inner = DepthState(removed=(("g1.gp.0", "block"), ("g2.gp.0", "block")))
    assert inner.with_cut(Cut("block", "g1")).removed == (("g1", "block"), ("g2.gp.0", "block"))
    assert state.with_cut(Cut("repeat", "stages")).repeats == (("stages", 1),)
