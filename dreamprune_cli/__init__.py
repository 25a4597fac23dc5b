"""dreamprune: data-free compression of image-restoration networks.

The public Python API (see the README's "Python API")::

    from dreamprune_cli import load_model, prune_model, dream, distill, evaluate, count_macs
    apply_threads()  # CPU threads chosen as the command line does (see engine/threads.py)

Whole commands, from settings to a run folder, are :mod:`dreamprune_cli.runs`::

    from dreamprune_cli import resolve_settings, runs
    settings = resolve_settings({"model": "ffa", "flops_target": 0.5, "out": "runs/ffa"})
    result = runs.pipeline.run(settings)  # what 'dreamprune pipeline' does, without printing

Names are imported on first use (PEP 562), so ``import dreamprune_cli`` and
``dreamprune --help`` do not pay for importing PyTorch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # the method's steps, with the CLI's defaults
    "dream": "dreamprune_cli.api",
    "distill": "dreamprune_cli.api",
    "evaluate": "dreamprune_cli.api",
    "count_macs": "dreamprune_cli.api",
    "apply_threads": "dreamprune_cli.engine.threads",
    # models and checkpoints
    "load_model": "dreamprune_cli.models.loading",
    "save_model": "dreamprune_cli.models.loading",
    "LoadedModel": "dreamprune_cli.models.loading",
    "build_model": "dreamprune_cli.models.registry",
    "list_models": "dreamprune_cli.models.registry",
    "get_model_info": "dreamprune_cli.models.registry",
    "load_student": "dreamprune_cli.prune.student",
    "save_student": "dreamprune_cli.prune.student",
    # pruning (``dreamprune_cli.prune`` is the subpackage of allocators and masks)
    "prune_model": "dreamprune_cli.prune.unstructured.plan",
    "prune_depth": "dreamprune_cli.prune.depth.plan",
    "prune_depth_channel": "dreamprune_cli.prune.depth.plan",
    "PruneResult": "dreamprune_cli.prune.result",
    "reconstruct_student": "dreamprune_cli.prune.reconstruct",
    "ReconstructionReport": "dreamprune_cli.prune.reconstruct",
    "teacher_channels": "dreamprune_cli.prune.channel_map",
    # the engine underneath, for finer control
    "dream_images": "dreamprune_cli.engine.dream",
    "DreamResult": "dreamprune_cli.engine.dream",
    "DreamSchedule": "dreamprune_cli.engine.dream",
    "evaluate_pairs": "dreamprune_cli.engine.evaluate",
    "EvaluationResult": "dreamprune_cli.engine.evaluate",
    "paired_latency": "dreamprune_cli.engine.latency",
    "PairedLatency": "dreamprune_cli.engine.latency",
    "run_pipeline": "dreamprune_cli.runs.pipeline",
    "resolve_settings": "dreamprune_cli.settings",
    "Settings": "dreamprune_cli.settings",
    "ResolvedSettings": "dreamprune_cli.settings",
    "count_costs": "dreamprune_cli.flops",
    "CostReport": "dreamprune_cli.flops",
    "psnr": "dreamprune_cli.metrics",
    "ssim": "dreamprune_cli.metrics",
    "pair_folders": "dreamprune_cli.data.pairs",
    "synthetic_test_set": "dreamprune_cli.data.synthetic",
    "DreampruneError": "dreamprune_cli.errors",
    "UsageError": "dreamprune_cli.errors",
    "RuntimeFailure": "dreamprune_cli.errors",
}

__all__ = ["__version__", "runs", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name == "runs":  # the subpackage, imported on first use like the names above
        return importlib.import_module("dreamprune_cli.runs")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dreamprune_cli' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from dreamprune_cli.api import count_macs, distill, dream, evaluate
    from dreamprune_cli.data.pairs import pair_folders
    from dreamprune_cli.data.synthetic import synthetic_test_set
    from dreamprune_cli.prune.student import load_student, save_student
    from dreamprune_cli.engine.dream import DreamResult, DreamSchedule, dream_images
    from dreamprune_cli.engine.evaluate import EvaluationResult, evaluate_pairs
    from dreamprune_cli.engine.latency import PairedLatency, paired_latency
    from dreamprune_cli.runs.pipeline import run_pipeline
    from dreamprune_cli.settings import ResolvedSettings, Settings, resolve_settings
    from dreamprune_cli.engine.threads import apply_threads
    from dreamprune_cli.prune.depth.plan import prune_depth, prune_depth_channel
    from dreamprune_cli.prune.result import PruneResult
    from dreamprune_cli.prune.unstructured.plan import prune_model
    from dreamprune_cli.prune.channel_map import teacher_channels
    from dreamprune_cli.prune.reconstruct import ReconstructionReport, reconstruct_student
    from dreamprune_cli.errors import DreampruneError, RuntimeFailure, UsageError
    from dreamprune_cli.flops import CostReport, count_costs
    from dreamprune_cli.metrics import psnr, ssim
    from dreamprune_cli.models.loading import LoadedModel, load_model, save_model
    from dreamprune_cli.models.registry import build_model, get_model_info, list_models
