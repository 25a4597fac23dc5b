"""``export``: convert any accepted checkpoint to safetensors carrying the model name and
config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.loading import save_model
from dreamprune_cli.report import ResultTable
from dreamprune_cli.runs.context import load_teacher
from dreamprune_cli.settings import ResolvedSettings


@dataclass
class ExportRun:
    model: str
    config: dict[str, Any]
    weights: Path | None
    out_path: Path
    tensors: int

    def summary(self) -> dict[str, Any]:
        return {"model": self.model, "config": self.config, "weights": self.weights,
                "output": self.out_path, "tensors": self.tensors}

    def tables(self) -> list[ResultTable]:
        return [ResultTable("export", ["model", "tensors", "output"],
                            [[self.model, self.tensors, self.out_path]])]


def check_destination(out: Path) -> None:
    """The destination must be a ``.safetensors`` file name (checked before any work)."""
    if out.suffix != ".safetensors":
        raise UsageError(f"$out {out}: expected a .safetensors file name")


def run(resolved: ResolvedSettings, out: Path) -> ExportRun:
    """Load the model the settings name and write it to ``out``.

    Raises:
        UsageError: ``out`` not a ``.safetensors`` name or existing without ``overwrite``;
            unreadable weights.
    """
    check_destination(out)
    common = resolved.settings.common
    loaded = load_teacher(common)
    path = save_model(loaded, out, overwrite=common.overwrite)
    return ExportRun(model=loaded.name, config=loaded.config, weights=common.weights,
                     out_path=path, tensors=len(loaded.network.state_dict()))
