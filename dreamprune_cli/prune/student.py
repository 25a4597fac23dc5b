"""The one writer and reader of student and mask files.

A student folder holds::

    student.safetensors  the student's plain state dict: the teacher's architecture with its
                         pruned weights exactly zero (unstructured), or thinner tensors marked
                         ``dreamprune.granularity = "channel"`` (channel); metadata: the model
                         name and config, how it was pruned or trained
    masks.safetensors    bool masks per pruned layer (unstructured only), same metadata

``dreamprune evaluate --weights DIR/student.safetensors`` loads the student file alone;
:func:`load_student` also re-attaches the masks so that training keeps pruned weights zero.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from safetensors.torch import load_file

from dreamprune_cli.errors import UsageError
from dreamprune_cli.flops import PRUNABLE_MODULES
from dreamprune_cli.models.checkpoint import read_model_name, save_safetensors
from dreamprune_cli.models.loading import LoadedModel, load_model
from dreamprune_cli.prune.unstructured.masks import (attach_masks, get_masks, plain_state_dict,
                                                     set_masks)

log = logging.getLogger(__name__)

STUDENT_FILE = "student.safetensors"
MASKS_FILE = "masks.safetensors"


def write_student(student: LoadedModel, out_dir: Path, extra: Mapping[str, str] | None = None,
                  overwrite: bool = True) -> dict[str, Path]:
    """Write ``student.safetensors`` and (unstructured students) ``masks.safetensors``.

    Args:
        student: a masked copy of the teacher (masks as parametrizations) or a channel-pruned
            one (``granularity == "channel"``: thinner layers, no masks).
        out_dir: an existing folder.
        extra: metadata strings added to both files (how the student was made).
        overwrite: replace existing files (each file is written atomically).

    Returns:
        ``{"student": path, "masks": path}`` (no ``masks`` for a channel-pruned student).
    """
    state = plain_state_dict(student.network)
    metadata = {**student.file_metadata(), **(extra or {})}
    out_dir = Path(out_dir)
    paths = {"student": save_safetensors(out_dir / STUDENT_FILE, state, student.name,
                                         student.config, extra=metadata, overwrite=overwrite)}
    if not student.structured:
        paths["masks"] = save_safetensors(out_dir / MASKS_FILE, get_masks(student.network),
                                          student.name, student.config, extra=metadata,
                                          overwrite=overwrite)
    return paths


def save_student(student: LoadedModel, out_dir: Path, extra: Mapping[str, str] | None = None,
                 overwrite: bool = True) -> Path:
    """:func:`write_student`, returning the student file's path."""
    return write_student(student, out_dir, extra, overwrite)["student"]


def load_student(student_path: str | Path, model: str | None = None,
                 trust: bool = False) -> LoadedModel:
    """Load a pruned student and re-attach its masks.

    Masks come from ``masks.safetensors`` beside the student when present (bool or 0/1
    tensors), else from the student's exact zeros (every zero weight stays pruned). A
    channel-pruned student (thinner layers) gets no masks.

    Raises:
        UsageError: the file names another model than ``model``, does not fit it, or its
            masks name layers the model does not have.
    """
    student_path = Path(student_path)
    named = read_model_name(student_path)
    if model is not None and named is not None and named != model:
        raise UsageError(f"$student {student_path}: a pruned {named!r}, but the teacher is "
                         f"{model!r} (the student must be a pruned copy of the teacher)")
    loaded = load_model(model, weights=student_path, trust=trust, weights_field="student")
    if loaded.structured:  # thinner or fewer layers: every weight is trainable
        return loaded
    modules = dict(loaded.network.named_modules())
    masks_path = student_path.parent / MASKS_FILE
    if masks_path.is_file():
        masks = {k: v.bool() for k, v in load_file(str(masks_path)).items()}
        unknown = sorted(set(masks) - set(modules))
        if unknown:
            raise UsageError(f"{masks_path}: masks for layers the model does not have: "
                             f"{', '.join(unknown[:10])}")
    else:
        masks = {name: module.weight.detach() != 0 for name, module in modules.items()
                 if isinstance(module, PRUNABLE_MODULES) and name
                 and bool((module.weight == 0).any())}
        log.info("no %s beside %s: masking its %d layers with zeros", MASKS_FILE,
                 student_path, len(masks))
    attach_masks(loaded.network, masks)
    set_masks(loaded.network, masks)
    return loaded
