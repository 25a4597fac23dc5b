"""User-supplied models: ``package.module:factory`` or ``path/to/file.py:ClassOrFactory``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.registry import ModelInfo


def is_custom_spec(name: str) -> bool:
    """Whether ``name`` names a user model rather than a registered one."""
    return ":" in name


def _import_target(spec: str) -> object:
    module_part, _, attr = spec.rpartition(":")
    if not module_part or not attr:
        raise UsageError(f"custom model {spec!r}: expected 'package.module:factory' "
                         "or 'path/to/file.py:ClassOrFactory'")
    try:
        if module_part.endswith(".py") or "/" in module_part or "\\" in module_part:
            path = Path(module_part)
            if not path.is_file():
                raise UsageError(f"custom model {spec!r}: no such file {path}")
            module_name = f"dreamprune_user_{abs(hash(path.resolve()))}"
            loader_spec = importlib.util.spec_from_file_location(module_name, path)
            if loader_spec is None or loader_spec.loader is None:
                raise UsageError(f"custom model {spec!r}: cannot import {path}")
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[module_name] = module
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_part)
    except UsageError:
        raise
    except Exception as exc:  # the user's code can raise anything while importing
        raise UsageError(f"custom model {spec!r}: import failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise UsageError(f"custom model {spec!r}: {module_part} has no attribute {attr!r}") from None


def custom_model_info(spec: str) -> ModelInfo:
    """A registry-like entry for a user model: RGB in [0, 1] in, the returned tensor out."""
    target = _import_target(spec)
    if not callable(target):
        raise UsageError(f"custom model {spec!r}: {type(target).__name__} is not callable")

    def factory(**kwargs: object) -> nn.Module:
        try:
            module = target(**kwargs)
        except Exception as exc:
            raise UsageError(f"custom model {spec!r}: construction failed: "
                             f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(module, nn.Module):
            raise UsageError(f"custom model {spec!r}: returned {type(module).__name__}, "
                             "expected a torch.nn.Module")
        return module

    return ModelInfo(name=spec, factory=factory, task="derain",
                     description=f"user model {spec}", variants={"official": {}})
