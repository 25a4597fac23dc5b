"""Teachers shipped with dreamprune: small networks trained on synthetic degradations.

``dreamprune_cli/assets/teachers/<model>.safetensors`` holds the tiny variant of a
registered model trained by ``bench/train_teachers.py`` (procedural scenes and dreamprune's
own synthesizers only; see ``docs/teachers.md``). Their metadata names the model and its
config, so they load like any dreamprune safetensors file.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

TEACHER_SUFFIX = ".safetensors"


def teachers_dir() -> Path:
    """Folder of the bundled teacher weights (installed package data)."""
    return Path(str(resources.files("dreamprune_cli") / "assets" / "teachers"))


def bundled_teacher_path(name: str) -> Path | None:
    """Path of the bundled teacher of model ``name``, or ``None`` when none ships."""
    if not name or "/" in name or ":" in name or name.startswith("."):
        return None
    path = teachers_dir() / f"{name}{TEACHER_SUFFIX}"
    return path if path.is_file() else None


def bundled_teachers() -> list[str]:
    """Names of the models that ship a teacher, sorted."""
    folder = teachers_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob(f"*{TEACHER_SUFFIX}"))
