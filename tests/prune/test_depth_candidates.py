"""``dreamprune_cli.prune.depth.candidates``: residual blocks, branches and repeats found."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.loading import load_model
from dreamprune_cli.prune.depth.candidates import (find_depth_space, glob_matches,
                                                   is_residual_block)
from dreamprune_cli.prune.depth.plan import _probe
from tests.helpers import KnownCosts, Plus
from tests.helpers import toy_loaded as _loaded


# -- toy networks --------------------------------------------------------------------------
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
