"""``dreamprune_cli.runs.models``: the listing's rows, summary and table from Python."""

from __future__ import annotations

from dreamprune_cli.models.registry import list_models
from dreamprune_cli.runs import models


def test_the_listing_of_the_tiny_variants() -> None:
    listing = models.run(variant="tiny", size=32)
    assert [row["name"] for row in listing.rows] == list_models()  # all have a tiny variant
    summary = listing.summary()
    assert summary["variant"] == "tiny" and summary["input_size"] == [3, 32, 32]
    assert summary["models"] is listing.rows
    (table,) = listing.tables()
    assert table.title == "models (tiny, MACs at 3x32x32)"
    assert table.columns[:4] == ["name", "task", "params", "GMACs"]
    rows = {row[0]: row for row in table.rows}
    by_name = {row["name"]: row for row in listing.rows}
    assert rows["identity"][2:4] == [0, 0.0]
    assert rows["hinet"][3] == by_name["hinet"]["macs"] / 1e9  # MACs shown in billions
    assert rows["aganet"][4:] == ["BGR", "outputs[-1]", 4, "y"]
