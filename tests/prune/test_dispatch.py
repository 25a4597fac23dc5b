"""``dreamprune_cli.prune.dispatch``: one planner per granularity, called with the spec's values."""

from __future__ import annotations

import pytest

from dreamprune_cli.prune import GRANULARITIES
from dreamprune_cli.prune.dispatch import prune_to_spec
from dreamprune_cli.settings import resolve_prune_spec, resolve_settings
from tests.helpers import tiny_loaded


def test_every_granularity_has_a_planner() -> None:
    from dreamprune_cli.prune.dispatch import PLANNERS

    assert set(PLANNERS) == set(GRANULARITIES)


@pytest.mark.parametrize("granularity", ["unstructured", "channel"])
def test_the_spec_target_or_the_one_given(granularity: str) -> None:
    """The spec's granularity picks the planner; ``flops_target`` overrides the spec's (within
    0.03: whole channels are coarse steps of a tiny model)."""
    spec = resolve_prune_spec(resolve_settings(
        {"granularity": granularity, "flops_target": 0.6, "allocator": "lamp",
         "flops_size": 32, "device": "cpu", "threads": 1}, env={}))
    teacher = tiny_loaded("ffa", blocks=1)
    result = prune_to_spec(teacher, spec)
    assert result.granularity == granularity and result.allocator == "lamp"
    assert result.flops_target == 0.6 and result.macs_ratio == pytest.approx(0.6, abs=0.03)
    other = prune_to_spec(teacher, spec, flops_target=0.8)
    assert other.flops_target == 0.8 and other.macs_ratio == pytest.approx(0.8, abs=0.03)
