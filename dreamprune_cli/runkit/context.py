"""The run context every subcommand builds from its settings, in one place.

Device and precision, CPU threads, the process group under ``torchrun``
(:mod:`dreamprune_cli.engine.distributed`; ``None`` in a plain process), the teacher (with
its weights), the clean-image source and dream schedule, the evaluation pairs and their
scoring protocol (the settings, else the model's registry entry:
:func:`dreamprune_cli.engine.evaluate.scoring_protocol`), the output folder, and the seeds:
randomness is seeded here only, through ``torch.Generator`` objects (:func:`generator`; under
torchrun one per rank, :func:`~dreamprune_cli.engine.distributed.rank_seed`), never the
global RNG. Every check that can fail runs before any work.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli import __version__
from dreamprune_cli.data.clean import CleanSource, make_clean_source
from dreamprune_cli.data.pairs import ImagePair, pair_folders
from dreamprune_cli.data.synthetic import synthetic_test_set
from dreamprune_cli.engine.distributed import (RankSync, join_from_environment, rank_seed,
                                               split_batch)
from dreamprune_cli.engine.dream import DreamSchedule
from dreamprune_cli.engine.evaluate import scoring_protocol
from dreamprune_cli.engine.inputs import input_batches
from dreamprune_cli.engine.runtime import Precision, resolve_device, resolve_precision
from dreamprune_cli.engine.threads import apply_threads
from dreamprune_cli.engine.tiling import Tiling
from dreamprune_cli.errors import UsageError
from dreamprune_cli.metrics import SSIM_WINDOW
from dreamprune_cli.models.loading import LoadedModel, load_model
from dreamprune_cli.run_record import ADVERSARIAL_FIELDS, record_settings
from dreamprune_cli.runkit.checks import check_diversity_layer, check_eval_pairs, check_input_size
from dreamprune_cli.settings import FIELD_SECTION, CommonSettings, ResolvedSettings

log = logging.getLogger(__name__)


def generator(seed: int) -> torch.Generator:
    """The CPU random generator of a run (the only source of its randomness)."""
    return torch.Generator().manual_seed(seed)


def load_teacher(common: CommonSettings) -> LoadedModel:
    """The model the common settings name, with its weights (none: an error unless
    ``random_weights``)."""
    return load_model(common.model, common.variant, common.weights,
                      strict=not common.non_strict, trust=common.trust_checkpoint,
                      overrides=common.model_kwargs, require_weights=not common.random_weights)


def runtime(common: CommonSettings, join: bool = False
            ) -> tuple[torch.device, Precision, RankSync | None]:
    """The device (checked to exist), the CPU threads (applied), the training precision and,
    with ``join`` (the commands that share their work over processes), the process group of
    the job torchrun started (``None`` without torchrun); under torchrun the device is this
    rank's (``cuda:LOCAL_RANK`` on CUDA).

    Raises:
        UsageError: no such device; under torchrun, a device no backend serves
            (:func:`~dreamprune_cli.engine.distributed.join_from_environment`).
    """
    device = resolve_device(common.device)
    sync = join_from_environment(device) if join else None
    if sync is not None:
        device = sync.device
    apply_threads(common.threads)
    return device, resolve_precision(device, common.amp, common.channels_last), sync


def require(value: Any, field: str, what: str) -> Any:
    """``value``, or a usage error saying that ``field`` is required and what it holds."""
    if value is None:
        raise UsageError(f"${field} is required{what}")
    return value


def scoring(resolved: ResolvedSettings, info: Any) -> dict[str, Any]:
    """:func:`~dreamprune_cli.engine.evaluate.evaluate_pairs`'s protocol keywords: the
    settings, else the model's registry entry (``info``), and the tiling."""
    ev = resolved.settings.evaluate
    if ev.tile is None and resolved.user_set("tile_overlap"):
        log.warning("--tile-overlap is only used with --tile; ignored")
    return {**scoring_protocol(info, ev.metric_space, ev.crop_border, ev.ssim_variant,
                               ev.quantize),
            "tiling": None if ev.tile is None else Tiling.aligned(ev.tile, ev.tile_overlap,
                                                                  info.size_multiple)}


def evaluation_pairs(model: LoadedModel, resolved: ResolvedSettings,
                     input_dir: Path | None, target_dir: Path | None,
                     fields: tuple[str, str] | None, limit: int | None = None
                     ) -> tuple[list[ImagePair], dict[str, Any]]:
    """The evaluation pairs and their scoring protocol, checked before any work.

    The pairs come from the two folders (paired by the ``pairing`` setting) or, with neither,
    the synthetic test set of the model's task; ``fields`` names the settings fields of the
    folders in messages (``None``: the command has none). Every image must be readable, of a
    size the model takes and large enough for the scoring (BasicSR's valid-window SSIM needs
    11 px after the crop border; MATLAB's padded SSIM any size).

    Raises:
        UsageError: one folder without the other, unpaired or unreadable images, bad sizes.
    """
    task = model.info.task
    if (input_dir is None) != (target_dir is None):
        assert fields is not None
        raise UsageError(f"${fields[0]} and ${fields[1]} go together (or give neither to use "
                         "the synthetic set of the model's task)")
    if input_dir is None:
        input_dir, target_dir = synthetic_test_set(task)
        name = "derain" if task == "identity" else task
        if fields is None:  # the command has no evaluation-folder options
            log.info("scoring on the synthetic %s set (%s)", name, input_dir.parent)
        else:
            flags = [f"--{field.replace('_', '-')}" for field in fields]
            log.info("no %s/%s: using the synthetic %s set (%s)", *flags, name,
                     input_dir.parent)
    pairs = pair_folders(input_dir, target_dir, limit=limit,  # type: ignore[arg-type]
                         pairing=resolved.settings.evaluate.pairing)
    protocol = scoring(resolved, model.info)
    min_side = SSIM_WINDOW if protocol["ssim_variant"] == "basicsr" else 1
    check_eval_pairs(model, pairs, protocol["crop_border"], min_side=min_side)
    return pairs, protocol


@dataclass
class TrainingContext:
    """What a dreaming or distilling run works with."""

    teacher: LoadedModel
    device: torch.device
    precision: Precision
    clean_source: CleanSource
    schedule: DreamSchedule
    seed: int
    sync: RankSync | None = None  # the process group under torchrun

    def generator(self) -> torch.Generator:
        """A fresh generator seeded with the run's seed (under torchrun, this rank's seed:
        :func:`~dreamprune_cli.engine.distributed.rank_seed`)."""
        return generator(rank_seed(self.seed, self.sync))


def training_context(resolved: ResolvedSettings, dreaming: bool = True,
                     diversity: bool | None = None,
                     inputs: str | None = None) -> TrainingContext:
    """The teacher, runtime, clean source and dream schedule of a training run, checked
    before any work: the dream size against the model when ``dreaming`` (the joint loop
    runs, on whatever inputs) and, when ``diversity`` (default: ``dreaming``; false when
    nothing is dreamed) with ``lambda_orth > 0``, the diversity loss's layer; the clean
    images; under torchrun, the batch's split over the processes; the split of the batch
    between the joint loop's ``inputs`` sources when given
    (:func:`~dreamprune_cli.engine.inputs.input_batches`)."""
    s = resolved.settings
    common, dream = s.common, s.dream
    device, precision, sync = runtime(common, join=True)
    teacher = load_teacher(common)
    if dream.size % teacher.info.size_multiple:
        log.info("--size %d is padded to a multiple of %d inside the model", dream.size,
                 teacher.info.size_multiple)
    if dreaming:
        check_input_size(teacher, dream.size, dream.size, f"$size {dream.size}")
    if diversity is None:
        diversity = dreaming
    if diversity:
        check_diversity_layer(teacher, dream.lambda_orth > 0)
    schedule = DreamSchedule.from_values(dream.model_dump())
    split_batch(schedule.batch_size, sync)
    if inputs is not None:
        input_batches(inputs, schedule.batch_size, sync)
    return TrainingContext(teacher=teacher, device=device, precision=precision,
                           clean_source=make_clean_source(dream.clean_dir, dream.scenes),
                           schedule=schedule, seed=common.seed, sync=sync)


def recorded_settings(command: str, resolved: ResolvedSettings, steps: int) -> dict[str, Any]:
    """The settings ``command`` records in its folder's ``run.json`` (``steps``: the
    effective number, the default included); the adversarial search's only on
    ``--inputs adversarial``, so that a resume of another run does not lock them."""
    values = {name: getattr(getattr(resolved.settings, section), name)
              for name, section in FIELD_SECTION.items()}
    if values.get("inputs") != "adversarial":
        values = {k: v for k, v in values.items() if k not in ADVERSARIAL_FIELDS}
    return record_settings(command, {**values, "steps": steps})


def default_out_dir(model: str) -> Path:
    """``runs/<model>-<YYYYmmdd-HHMMSS>``: the folder of a run given none."""
    return Path("runs") / f"{model}-{time.strftime('%Y%m%d-%H%M%S')}"


def versions() -> dict[str, str]:
    """Versions that determine a run's numbers."""
    return {"dreamprune": __version__, "torch": torch.__version__,
            "python": platform.python_version()}
