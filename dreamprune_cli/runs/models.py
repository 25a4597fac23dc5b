"""``models``: the registered models with their parameters and MACs at one input size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dreamprune_cli.models.catalog import describe_models
from dreamprune_cli.report import ResultTable


@dataclass
class ModelsListing:
    """One row per registered model (:func:`~dreamprune_cli.models.catalog.describe_models`)."""

    variant: str
    size: int
    rows: list[dict[str, Any]]

    def summary(self) -> dict[str, Any]:
        return {"variant": self.variant, "input_size": [3, self.size, self.size],
                "models": self.rows}

    def tables(self) -> list[ResultTable]:
        return [ResultTable(
            f"models ({self.variant}, MACs at 3x{self.size}x{self.size})",
            ["name", "task", "params", "GMACs", "channels", "output", "multiple", "metric"],
            [[r["name"], r["task"], r["params"], r["macs"] / 1e9, r["channel_order"],
              r["output"], r["size_multiple"], r["metric_space"]] for r in self.rows])]


def run(variant: str = "official", size: int = 256) -> ModelsListing:
    """Describe every registered model's ``variant`` at ``3 x size x size``."""
    return ModelsListing(variant=variant, size=size,
                         rows=describe_models(variant=variant, size=size))
