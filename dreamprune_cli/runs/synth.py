"""``synth``: write synthetic degraded/clean pairs (the Rain13k layout ``evaluate`` reads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamprune_cli.data.synthetic import write_synthetic_set
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.report import ResultTable
from dreamprune_cli.runkit.context import require
from dreamprune_cli.settings import ResolvedSettings


@dataclass
class SynthRun:
    """The written set: its manifest and folder (``input/``, ``target/``, ``manifest.json``)."""

    manifest: dict[str, Any]
    out_dir: Path

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {"task": m["task"], "count": m["count"], "size": m["size"], "seed": m["seed"],
                "clean": m["clean"], "output": self.out_dir,
                "input_dir": self.out_dir / "input", "target_dir": self.out_dir / "target",
                "manifest": self.out_dir / "manifest.json"}

    def tables(self) -> list[ResultTable]:
        m = self.manifest
        return [ResultTable(f"synth {m['task']}", ["pairs", "size", "seed", "clean", "output"],
                            [[m["count"], m["size"], m["seed"], m["clean"], self.out_dir]])]


def run(resolved: ResolvedSettings, progress: ProgressSink | None = None) -> SynthRun:
    """Write ``count`` pairs of ``size`` px for ``task`` into ``out``, seeded by ``seed``.

    Raises:
        UsageError: no task or output folder, a non-empty folder without ``overwrite``.
    """
    s = resolved.settings
    task = require(s.synth.task, "task", ": derain, raindrop or dehaze")
    out = require(s.common.out, "out", ": the folder for input/, target/ and manifest.json")
    manifest = write_synthetic_set(task, s.dream.count, s.dream.size, s.common.seed, out,
                                   clean_dir=s.dream.clean_dir, scenes=s.dream.scenes,
                                   overwrite=s.common.overwrite,
                                   progress=progress)
    return SynthRun(manifest=manifest, out_dir=out)
