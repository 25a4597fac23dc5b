"""Depth pruning: candidates, the greedy search, the depth and depth+channel plans."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.flops import count_costs
from dreamprune_cli.models.loading import LoadedModel, load_model
from dreamprune_cli.models.registry import ModelInfo, get_model_info
from dreamprune_cli.prune.depth.candidates import (find_depth_space, glob_matches,
                                                   is_residual_block)
from dreamprune_cli.prune.depth.plan import _probe, prune_depth, prune_depth_channel
from dreamprune_cli.prune.depth.search import Cut, DepthSearch, DepthState, greedy_path


# -- toy networks --------------------------------------------------------------------------
class Plus(nn.Module):
    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class ReluPlus(Plus):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x) + x)


class InPlace(Plus):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.conv(x)
        res += x
        return res


class Plain(Plus):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Scaled(Plus):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x + self.conv(x)


class Branching(Plus):  # control flow on data: fx cannot trace it
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x + self.conv(x)
        return x


@pytest.mark.parametrize("block, expected", [(Plus(), True), (ReluPlus(), True),
                                             (InPlace(), True), (Plain(), False),
                                             (Scaled(), False), (Branching(), False)])
def test_residual_blocks_are_recognised_from_their_forward(block: nn.Module,
                                                           expected: bool) -> None:
    assert is_residual_block(block) is expected


def test_globs_match_dotted_names_part_by_part() -> None:
    assert glob_matches("res_conv1", "res_conv*")
    assert not glob_matches("res_conv1.0", "res_conv*")
    assert glob_matches("g1.gp.3", "g*.gp.*")
    assert glob_matches("det_conv3", "det_conv[1-9]") and not glob_matches("det_conv0",
                                                                            "det_conv[1-9]")


class KnownCosts(nn.Module):
    """Head conv, three residual blocks of widths 8 (1x1), 8 (3x3), 8 (5x5), tail conv.

    MACs at 3x8x8 (64 positions), weights plus bias: head 8*3+8 = 32 per position; block k x k:
    8*8*k*k + 8; tail 3*8 + 3 = 27.
    """

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 1)
        self.small = Plus(8)
        self.small.conv = nn.Conv2d(8, 8, 1)
        self.mid = Plus(8)
        self.big = Plus(8)
        self.big.conv = nn.Conv2d(8, 8, 5, padding=2)
        self.tail = nn.Conv2d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.big(self.mid(self.small(self.head(x))))) + x


def _loaded(network: nn.Module, **info: object) -> LoadedModel:
    entry = ModelInfo(name="toy", factory=lambda: network, task="derain", description="toy",
                      **info)  # type: ignore[arg-type]
    return LoadedModel(name="toy", info=entry, network=network.eval(), config={}, weights=None)


def test_candidates_of_a_custom_residual_model_are_found_by_tracing() -> None:
    loaded = _loaded(KnownCosts())
    space = find_depth_space(loaded, torch.rand(1, 3, 8, 8))
    assert space.blocks == ["small", "mid", "big"] and not space.branches and not space.repeats


def test_a_model_without_removable_blocks_is_named_in_one_line() -> None:
    loaded = _loaded(nn.Sequential(nn.Conv2d(3, 3, 3, padding=1)))
    with pytest.raises(UsageError, match="model .toy.: nothing to remove at granularity "
                                         "depth"):
        find_depth_space(loaded, torch.rand(1, 3, 8, 8))


def test_excluded_layers_keep_their_blocks() -> None:
    loaded = _loaded(KnownCosts(), prune_exclude=("mid.conv",))
    assert find_depth_space(loaded, torch.rand(1, 3, 8, 8)).blocks == ["small", "big"]


@pytest.mark.parametrize("name, blocks, branches, repeats", [
    ("prenet", [], ["res_conv1", "res_conv2"], {"stages": 3}),
    ("prenet_r", [], [], {"stages": 3, "blocks": 2}),
    ("gcanet", [f"res{i}" for i in range(1, 8)], [], {}),
    ("aganet", [], ["det_conv1"], {"iterations": 4}),
    ("durn_s", ["block1", "block2", "block3"], [], {}),
    ("ffa", ["g1.gp.0", "g1.gp.1", "g1", "g2.gp.0", "g2.gp.1", "g2", "g3.gp.0", "g3.gp.1",
             "g3"], [], {}),
])
def test_candidates_of_each_family(name: str, blocks: list[str], branches: list[str],
                                   repeats: dict[str, int]) -> None:
    loaded = load_model(name, variant="tiny", use_bundled=False)
    space = find_depth_space(loaded, _probe(loaded))
    assert (space.blocks, space.branches, space.repeats) == (blocks, branches, repeats)


def test_mprnet_channel_attention_blocks_are_found() -> None:
    loaded = load_model("mprnet", variant="tiny", use_bundled=False)
    space = find_depth_space(loaded, _probe(loaded))
    assert "stage3_orsnet.orb1" in space.blocks
    assert "stage1_encoder.encoder_level1.0" in space.blocks  # a CAB


def test_hinet_has_nothing_to_remove() -> None:
    loaded = load_model("hinet", variant="tiny", use_bundled=False)
    with pytest.raises(UsageError, match="'hinet': nothing to remove"):
        find_depth_space(loaded, _probe(loaded))


# -- the search ----------------------------------------------------------------------------
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


# -- the plans -----------------------------------------------------------------------------
def test_fewer_stages_give_the_teachers_intermediate_result() -> None:
    torch.manual_seed(0)
    prenet = load_model("prenet", variant="tiny", use_bundled=False)
    result = prune_depth(prenet, 0.67, flops_size=16, calibration_size=16)
    assert result.granularity == "depth" and result.details["repeats"] == {"stages": [3, 2]}
    assert result.macs_ratio == pytest.approx(2 / 3)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        _, stages = prenet.network(x)
        student, _ = result.student.network(x)
    assert torch.equal(student, stages[1])
    assert result.student.config["stages"] == 2 and prenet.config["stages"] == 3


def test_a_coarse_target_takes_the_largest_plan_within_it_and_says_so(caplog) -> None:
    torch.manual_seed(0)
    prenet = load_model("prenet", variant="tiny", use_bundled=False)
    result = prune_depth(prenet, 0.5, flops_size=16, calibration_size=16)
    ratios = [step["macs_ratio"] for step in result.details["path"]]
    assert ratios == pytest.approx([1, 2 / 3, 1 / 3])  # greedy: stage after stage
    # one cut from the last state above 0.5 (2 stages): residual blocks land at 0.57, above
    # the budget; the largest plan within it is one stage
    finishing = [step["macs_ratio"] for step in result.details["finishing"]]
    assert min(finishing) > 0.51
    assert result.macs_ratio == pytest.approx(1 / 3)
    assert not result.details["within_tolerance"]
    assert "the least drifting plan within it keeps 0.3333" in caplog.text


def test_depth_and_channel_meet_the_target_and_report_every_split() -> None:
    torch.manual_seed(0)
    gcanet = load_model("gcanet", variant="tiny", use_bundled=False)
    result = prune_depth_channel(gcanet, 0.5, "lamp", flops_size=32, calibration_size=32)
    assert result.macs_ratio <= 0.5 * 1.02  # within the budget
    splits = result.details["splits"]
    assert splits[0]["removed"] == "none" and len(splits) >= 2
    met = [s for s in splits if s["within_budget"]]
    assert met and result.details["chosen_split"]["mse"] == min(s["mse"] for s in met)
    assert result.granularity in ("depth", "depth+channel")
    assert math.isfinite(result.details["chosen_split"]["mse"])


def test_registry_declarations_are_on_the_entries() -> None:
    assert get_model_info("prenet").depth_branches == ("res_conv*",)
    assert get_model_info("prenet_r").depth_repeats == ("stages", "blocks")


CUSTOM = '''
import torch
from torch import nn


class Looped(nn.Module):
    depth_branches = ("branch",)
    depth_repeats = ("steps",)

    def __init__(self, steps: int = 3):
        super().__init__()
        self.steps = steps
        self.head = nn.Conv2d(3, 4, 3, padding=1)
        self.branch = nn.Conv2d(4, 4, 3, padding=1)
        self.tail = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x):
        y = self.head(x)
        for _ in range(self.steps):
            if y.abs().sum() > 0:  # data-dependent: not traceable, so the branch is declared
                y = torch.relu(self.branch(y) + y)
        return self.tail(y) + x


class Misdeclared(Looped):
    depth_repeats = ("loops",)
'''


def test_a_custom_model_declares_branches_and_repeats(tmp_path) -> None:
    source = tmp_path / "looped.py"
    source.write_text(CUSTOM)
    loaded = load_model(f"{source}:Looped")
    space = find_depth_space(loaded, torch.rand(1, 3, 8, 8))
    assert (space.blocks, space.branches, space.repeats) == ([], ["branch"], {"steps": 3})
    result = prune_depth(loaded, 0.7, flops_size=16, calibration_size=16)
    assert result.student.config.get("steps", 3) <= 3 and result.macs_ratio < 1
    with pytest.raises(UsageError, match="Misdeclared.depth_repeats = \\('loops',\\): each "
                                         "key must also be an integer attribute"):
        load_model(f"{source}:Misdeclared")
