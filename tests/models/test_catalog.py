"""``dreamprune_cli.models.catalog``: model sizes against the networks, their cache, records."""

from __future__ import annotations

import json

from dreamprune_cli.models.catalog import _cache_path, describe_models, model_costs
from dreamprune_cli.models.registry import build_model, list_models
from tests.helpers import num_params


def test_costs_match_the_networks_and_come_from_the_cache() -> None:
    costs = model_costs("tiny", 32)
    assert list(costs) == list_models()
    assert costs["identity"] == {"params": 0, "macs": 0}
    assert costs["ffa"]["params"] == num_params(build_model("ffa", "tiny"))
    assert costs["ffa"]["macs"] > costs["ffa"]["params"]  # 32x32 positions per weight, or so
    path = _cache_path("tiny", 32)
    assert path.is_file()  # written by the first call, read by the next ones
    written = path.read_text()
    try:
        path.write_text(json.dumps({**costs, "ffa": {"params": 1, "macs": 2}}))
        assert model_costs("tiny", 32)["ffa"] == {"params": 1, "macs": 2}
    finally:
        path.write_text(written)  # the session's later tests read the true counts


def test_records_hold_the_registry_facts() -> None:
    rows = {row["name"]: row for row in describe_models("tiny", 32)}
    assert set(rows) == set(list_models())
    aganet = rows["aganet"]
    assert (aganet["channel_order"], aganet["output"], aganet["size_multiple"]) == \
        ("BGR", "outputs[-1]", 4)
    assert aganet["preset"] == "presets/aganet.toml" and "tiny" in aganet["variants"]
    assert rows["identity"]["output"] == "tensor" and rows["identity"]["params"] == 0
