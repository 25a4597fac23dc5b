"""Depth pruning: the depth and depth+channel plans (the candidates:
``test_depth_candidates.py``; the greedy search: ``test_depth_search.py``)."""

from __future__ import annotations

import math

import pytest
import torch

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.loading import load_model
from dreamprune_cli.models.registry import get_model_info
from dreamprune_cli.prune.depth.candidates import find_depth_space
from dreamprune_cli.prune.depth.plan import prune_depth, prune_depth_channel


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
