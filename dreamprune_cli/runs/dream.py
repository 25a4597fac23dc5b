"""``dream``: invert the teacher, optimising noise into degraded images it restores to clean
ones, into a dream folder (:mod:`dreamprune_cli.runkit.dream_files`), resumable."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.report import ResultTable
from dreamprune_cli.runkit.context import recorded_settings, require, training_context
from dreamprune_cli.runkit.dream_files import run_dream_to_folder
from dreamprune_cli.settings import ResolvedSettings


@dataclass
class DreamRun:
    """The dream folder's manifest (settings, seed, versions, final losses, diversity)."""

    manifest: dict[str, Any]
    out_dir: Path
    model: str

    def summary(self) -> dict[str, Any]:
        return {**self.manifest, "save_dir": self.out_dir}

    def tables(self) -> list[ResultTable]:
        m = self.manifest
        return [ResultTable(f"dream {self.model}",
                            ["count", "L_dream", "L_orth", "diversity (cos)",
                             "PSNR dream vs clean", "folder"],
                            [[m["count"], m["final_dream_loss"], m["final_orth_loss"],
                              m["diversity_mean_cosine"], m["psnr_dream_vs_clean"],
                              self.out_dir]])]


def run(resolved: ResolvedSettings, progress: ProgressSink | None = None) -> DreamRun:
    """Dream ``count`` images into ``save_dir`` (or continue the ``resume`` folder).

    Raises:
        UsageError: no folder, bad sizes or files (before any work).
        Interrupted: after saving, on Ctrl-C or SIGTERM (naming the folder to resume).
    """
    s = resolved.settings
    folder = require(s.common.resume or s.common.save_dir, "save_dir",
                     " (the folder for the dreams)")
    ctx = training_context(resolved)
    steps = s.dream.dream_steps
    manifest = run_dream_to_folder(
        ctx.teacher.adapter().to(ctx.device), ctx.clean_source, folder, s.dream.count, steps,
        ctx.schedule, ctx.generator(), ctx.device, ctx.precision,
        manifest={"model": ctx.teacher.name, "weights": ctx.teacher.weights,
                  "seed": ctx.seed, "steps_per_batch": steps, "settings": resolved.flat(),
                  "device": str(ctx.device)},
        resume=s.common.resume is not None, overwrite=s.common.overwrite,
        run_record=recorded_settings("dream", resolved, steps), progress=progress,
        sync=ctx.sync)
    return DreamRun(manifest=manifest, out_dir=folder, model=ctx.teacher.name)
