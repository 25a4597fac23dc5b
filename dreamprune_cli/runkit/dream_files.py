"""The files of a dream folder: written by ``dream``, read by ``distill --dreams``.

Layout::

    dreams.safetensors   exact float tensors: dreams, clean, restored (N, 3, S, S)
    dream_000.png ...    the dreams as 8-bit PNGs, for people
    grid.png             one row per dream: dream | teacher output | clean target
    losses.csv, losses.png   the loss history
    manifest.json        settings, seed, versions, final losses, diversity
    state.pt             resumable progress (finished batches and the batch in progress),
                         removed when done
    run.json             the settings that define the dreams (checked on --resume)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from dreamprune_cli.data.images import write_png
from dreamprune_cli.data.clean import CleanSource
from dreamprune_cli.engine.distributed import RankSync, check_world_size, is_writer, on_writer
from dreamprune_cli.engine.runtime import Precision
from dreamprune_cli.engine.dream import DreamResult, DreamSchedule, dream_images
from dreamprune_cli.finite import nonfinite_entries
from dreamprune_cli.errors import DreampruneError, Interrupted, RuntimeFailure, UsageError
from dreamprune_cli.fileio import atomic_write, ensure_output_dir, write_json_atomic
from dreamprune_cli.models.adapter import RestorationAdapter
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.metrics import psnr
from dreamprune_cli.report import save_grid, save_loss_history
from dreamprune_cli.run_record import write_run_record
from dreamprune_cli.runkit.context import versions

log = logging.getLogger(__name__)

TENSORS_NAME = "dreams.safetensors"
STATE_NAME = "state.pt"
DREAM_COLUMNS = ["dream (input)", "teacher output", "clean target"]


def write_dream_folder(folder: Path, result: DreamResult, manifest: dict[str, Any],
                       overwrite: bool = True, grid_rows: int = 8) -> dict[str, Any]:
    """Write every file of the layout above; returns the manifest as written."""
    tensors = {"dreams": result.dreams.contiguous(), "clean": result.clean.contiguous(),
               "restored": result.restored.contiguous()}
    atomic_write(folder / TENSORS_NAME, lambda tmp: save_file(tensors, str(tmp)), overwrite)
    for index, image in enumerate(result.dreams):
        write_png(folder / f"dream_{index:03d}.png", image, overwrite=overwrite)
    rows = [[result.dreams[i], result.restored[i].clamp(0, 1), result.clean[i]]
            for i in range(min(grid_rows, result.dreams.shape[0]))]
    save_grid(folder / "grid.png", rows, overwrite=overwrite, column_labels=DREAM_COLUMNS,
              row_labels=[f"dream_{i:03d}" for i in range(len(rows))])
    save_loss_history(folder, result.history, "dreaming losses")
    dream_psnr = psnr(result.dreams, result.clean).mean().item()
    full = {**manifest, "versions": versions(), "count": int(result.dreams.shape[0]),
            "final_dream_loss": result.final_dream_loss,
            "final_orth_loss": result.final_orth_loss,
            "diversity_mean_cosine": result.diversity,
            "psnr_dream_vs_clean": dream_psnr,
            "restored_psnr_vs_clean": psnr(result.restored.clamp(0, 1),
                                           result.clean).mean().item()}
    write_json_atomic(folder / "manifest.json", full, overwrite=overwrite)
    return full


def read_dreams(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a dream folder (``dreams``, ``clean``, ``restored``)."""
    path = Path(folder) / TENSORS_NAME
    if not path.is_file():
        raise UsageError(f"$dreams {folder}: no {TENSORS_NAME} (write one with "
                         "'dreamprune dream $save_dir DIR')")
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise UsageError(f"$dreams {path}: not a valid safetensors file ({exc})") from None
    if "dreams" not in tensors or tensors["dreams"].dim() != 4:
        raise UsageError(f"$dreams {path}: expected a 'dreams' tensor (N, 3, H, W)")
    return tensors


def run_dream_to_folder(teacher: RestorationAdapter, clean_source: CleanSource, folder: Path,
                        count: int, steps: int, schedule: DreamSchedule,
                        generator: torch.Generator, device: torch.device,
                        precision: Precision, manifest: dict[str, Any], resume: bool = False,
                        overwrite: bool = False, run_record: dict[str, Any] | None = None,
                        progress: ProgressSink | None = None,
                        save_every: int = 50, sync: RankSync | None = None) -> dict[str, Any]:
    """Dream into ``folder``, saving resumable progress (``state.pt``) after every batch,
    every ``save_every`` steps within a batch, and on Ctrl-C or SIGTERM.

    An existing non-empty folder is an error unless ``overwrite`` or ``resume``. With
    ``resume`` the run continues from ``state.pt``, which must exist and must have been
    written with the same count, steps, batch size and image size (checked before any work).
    ``run_record``: the defining settings written to ``folder/run.json`` before any work.
    ``sync``: one of several processes (:func:`dream_images`); rank 0 writes the files, and
    ``state.pt`` must be resumed by as many processes as wrote it.

    Raises:
        UsageError: a non-empty folder without ``overwrite``/``resume``; ``resume`` on a
            folder that is complete, has nothing to resume, or was started differently.
        Interrupted: after saving, when Ctrl-C or SIGTERM stops the run (it names the saved
            state and the folder to resume).
        RuntimeFailure: non-finite dreams (nothing is saved for them).
    """
    folder = Path(folder)
    state_path = folder / STATE_NAME
    run = {"count": count, "steps": steps, "batch_size": schedule.batch_size,
           "size": schedule.size}
    resume_state = None
    if resume:
        if state_path.is_file():
            try:
                resume_state = torch.load(state_path, map_location="cpu", weights_only=True)
            except Exception as exc:
                raise UsageError(f"$resume: cannot read {state_path} ({exc})") from None
            check_world_size(resume_state, sync, state_path)
            saved_run = resume_state.get("run", {})
            for key, value in run.items():
                if key in saved_run and saved_run[key] != value:
                    raise UsageError(
                        f"$resume {folder}: this run was started with {key}={saved_run[key]}, "
                        f"not {value} (pass the same settings, or start a new folder)")
        elif (folder / TENSORS_NAME).is_file():
            raise UsageError(f"$resume {folder}: this dream folder is already complete")
        else:
            raise UsageError(f"$resume {folder}: nothing to resume (no {STATE_NAME}); start "
                             f"a new run with $save_dir {folder}")
    folder = on_writer(sync, lambda: ensure_output_dir(folder, overwrite, resume))

    if run_record is not None and is_writer(sync):
        write_run_record(folder, "dream", run_record)

    def save_state(state: dict[str, Any]) -> None:
        bad = nonfinite_entries(state)
        if bad:
            raise RuntimeFailure(f"non-finite values in {', '.join(bad[:5])}: stopping "
                                 "without saving them (try a lower $noise_lr)")
        state = {**state, "run": run}
        if is_writer(sync):
            atomic_write(state_path, lambda tmp: torch.save(state, tmp), overwrite=True)

    try:
        result = dream_images(teacher, clean_source, count, steps, schedule, generator, device,
                              precision, progress, resume_state=resume_state,
                              on_batch_done=save_state, save_every=save_every, sync=sync)
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the progress is saved
        stop = exc if isinstance(exc, Interrupted) else Interrupted()
        if state_path.is_file():
            stop.checkpoint, stop.resume_dir = state_path, folder
            log.warning("progress saved in %s; continue with: dreamprune dream --resume %s",
                        state_path, folder)
        raise stop from None
    except DreampruneError as exc:
        if state_path.is_file():
            exc.checkpoint, exc.resume_dir = state_path, folder
        raise
    written = on_writer(sync, lambda: write_dream_folder(folder, result, manifest,
                                                         overwrite=True))
    if is_writer(sync):
        state_path.unlink(missing_ok=True)
    return written
