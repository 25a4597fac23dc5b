"""Reading weights from the authors' containers and safetensors, safely.

Layers (the timm habit): :func:`read_checkpoint` opens a file without running code,
:func:`extract_state_dict` picks the weights out of the container and strips ``module.``,
:func:`load_weights` checks names and shapes and loads them.

Pickle files are opened with ``torch.load(weights_only=True)``; NumPy scalars and dtypes (the
training history some authors store beside the weights) are allowlisted since they cannot run
code. A pickle that names other classes (a whole ``torch.save(model)``, often of an
``nn.DataParallel`` whose class lived in the author's ``__main__``) is read again with those
objects as inert records (:mod:`~dreamprune_cli.models.legacy_pickle`) and its modules'
tensors flattened into a state dict; one that would call anything beyond the tensor-rebuilding
allow-list is refused, unless the caller passes ``trust=True`` (the ``--trust-checkpoint``
flag) for a file they trust.
"""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from dreamprune_cli.finite import nonfinite_entries
from dreamprune_cli.errors import RuntimeFailure, UsageError
from dreamprune_cli.fileio import atomic_write
from dreamprune_cli.models.numpy_globals import numpy_safe_globals

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".pk", ".pkl", ".ckpt", ".bin", ".safetensors")
# Containers the field uses, most specific first (BasicSR: params_ema falls back to params).
_CONTAINER_KEYS = ("params_ema", "params", "state_dict", "model", "model_state_dict",
                   "net", "network", "generator")
METADATA_MODEL = "dreamprune.model"
METADATA_CONFIG = "dreamprune.config"
log = logging.getLogger(__name__)


@dataclass
class Checkpoint:
    """What a weights file holds: the state dict and any metadata dreamprune stored."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    field_name: str = "weights"  # the settings field that named the file, for messages

    @property
    def model_name(self) -> str | None:
        return self.metadata.get(METADATA_MODEL)

    @property
    def model_config(self) -> dict[str, Any] | None:
        raw = self.metadata.get(METADATA_CONFIG)
        return json.loads(raw) if raw else None


def read_model_name(path: str | Path) -> str | None:
    """The model a dreamprune safetensors file names in its metadata (header only), else
    ``None`` (another format, no metadata, or not readable: loading it reports why)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get(METADATA_MODEL)
    except Exception:  # the real load names the problem
        return None


def read_checkpoint(path: str | Path, key: str | None = None, trust: bool = False,
                    field: str = "weights") -> Checkpoint:
    """Open a weights file and return its state dict (and metadata for safetensors).

    Args:
        path: ``.safetensors`` or a torch pickle (``.pth .pt .pk .pkl .ckpt .bin``).
        key: the container key the model's authors use (tried first).
        trust: allow full unpickling (runs code from the file); only for trusted files.
        field: the settings field that named the file (``weights``, ``student``), for messages.

    Raises:
        UsageError: missing file, unreadable container, or a pickle that would run code.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"${field} {path}: no such file")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
            tensors = load_file(str(path))
        except Exception as exc:
            raise UsageError(f"${field} {path}: not a valid safetensors file ({exc})") from None
        return Checkpoint(path, tensors, metadata, field)
    try:
        raw = _torch_load(path, trust)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        reason = next((line.split("WeightsUnpickler error:")[-1].strip() for line in lines
                       if "global" in line.lower() or "WeightsUnpickler" in line),
                      lines[-1] if lines else "unknown")
        if "global" not in reason.lower():
            raise UsageError(f"${field} {path}: cannot read checkpoint: not a torch "
                             f"checkpoint or safetensors file ({reason})") from None
        raw = _read_inert(path, field, reason)
    except (AttributeError, ImportError) as exc:  # trusted, but its classes are gone
        raw = _read_inert(path, field, str(exc).splitlines()[0], trusted=True)
    except Exception as exc:
        raise UsageError(f"${field} {path}: cannot read checkpoint "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    return Checkpoint(path, extract_state_dict(raw, path, key, field), field_name=field)


def _torch_load(path: Path, trust: bool) -> object:
    """``torch.load`` weights-only (NumPy scalars allowed), or in full when ``trust``."""
    if trust:
        return torch.load(path, map_location="cpu", weights_only=False)
    with torch.serialization.safe_globals(numpy_safe_globals()):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except UnicodeDecodeError:  # Python 2 era pickles (e.g. DuRN's)
            return torch.load(path, map_location="cpu", weights_only=True, encoding="latin1")


def _read_inert(path: Path, field: str, reason: str, trusted: bool = False) -> object:
    """A pickle that names classes beyond tensors, read with those objects as inert records
    (:mod:`~dreamprune_cli.models.legacy_pickle`: whole-module ``torch.save(model)`` files).

    ``reason`` is why the first load failed; ``trusted``: that load was the full unpickling
    of ``--trust-checkpoint`` (which failed on a class that cannot be imported here).

    Raises:
        UsageError: the pickle would call or import code (nothing ran), or is unreadable
            that way too (``reason`` is named).
    """
    from dreamprune_cli.models.legacy_pickle import RefusedPickle, read_whole_module_pickle

    try:
        try:
            raw, classes = read_whole_module_pickle(path)
        except UnicodeDecodeError:
            raw, classes = read_whole_module_pickle(path, encoding="latin1")
    except RefusedPickle as exc:
        if trusted:
            raise UsageError(
                f"${field} {path}: cannot read checkpoint: {reason}; read without its classes, "
                f"{exc}: install or define the classes it names") from None
        raise UsageError(
            f"${field} {path}: refused to unpickle: {exc}, beyond tensors and plain values; "
            "nothing was run. If you trust the file, pass $trust_checkpoint, or convert it "
            "with 'dreamprune export' on a trusted machine") from None
    except Exception:
        if trusted:
            raise UsageError(f"${field} {path}: cannot read checkpoint ({reason})") from None
        raise UsageError(
            f"${field} {path}: refused to unpickle: the file asks to run or import code "
            f"beyond tensors and plain values ({reason}); if you trust it, pass "
            "$trust_checkpoint, or convert it with 'dreamprune export' on a trusted machine"
        ) from None
    if classes:
        log.info("%s: read a whole-module pickle of class %s: its tensors only, nothing "
                 "from the file ran", path, ", ".join(classes))
    return raw


def _is_state_dict(value: object) -> bool:
    return (isinstance(value, Mapping) and len(value) > 0
            and all(isinstance(v, torch.Tensor) for v in value.values()))


def extract_state_dict(raw: object, path: Path, key: str | None = None,
                       field: str = "weights") -> dict[str, torch.Tensor]:
    """Pick the weights out of a checkpoint container and strip a ``module.`` prefix."""
    if isinstance(raw, nn.Module):
        raw = raw.state_dict()
    if not isinstance(raw, Mapping):
        raise UsageError(f"${field} {path}: expected a dict of tensors, got {type(raw).__name__}")
    state: Mapping[str, Any] | None = raw if _is_state_dict(raw) else None
    if state is None:
        order = [k for k in (key, *_CONTAINER_KEYS) if k]
        if key == "params":  # BasicSR: an EMA copy, when saved, is the one to evaluate
            order.insert(0, "params_ema")
        for candidate in order:
            if candidate in raw and _is_state_dict(raw[candidate]):
                state = raw[candidate]
                break
    if state is None:
        keys = ", ".join(map(str, list(raw)[:10]))
        raise UsageError(f"${field} {path}: no state dict found (top-level keys: {keys}; "
                         f"expected tensors or one of {', '.join(_CONTAINER_KEYS)})")
    state = dict(state)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def compare_state_dicts(model: nn.Module, state: Mapping[str, torch.Tensor]
                        ) -> tuple[list[str], list[str], list[str]]:
    """Missing, unexpected and mis-shaped keys of ``state`` against ``model``.

    A BatchNorm's ``num_batches_tracked`` is never missing: PyTorch before 0.4.1 did not have
    it (the DuRN authors saved with 0.3.1), and BatchNorm keeps its own count when a state
    dict without it is loaded.
    """
    expected = model.state_dict()
    untracked = {f"{name}.num_batches_tracked" if name else "num_batches_tracked"
                 for name, module in model.named_modules()
                 if isinstance(module, nn.modules.batchnorm._BatchNorm)}
    missing = [k for k in expected if k not in state and k not in untracked]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    return missing, unexpected, mis_shaped


def load_weights(model: nn.Module, checkpoint: Checkpoint, strict: bool = True) -> list[str]:
    """Load ``checkpoint`` into ``model``; returns the problems skipped when not strict.

    Raises:
        UsageError: when strict and any key is missing, unexpected or mis-shaped (the
            message lists the first 10 of each); any tensor holding NaN or inf.
    """
    missing, unexpected, mis_shaped = compare_state_dicts(model, checkpoint.state_dict)
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected),
                        ("mis-shaped", mis_shaped)):
        if keys:
            more = f" (+{len(keys) - 10} more)" if len(keys) > 10 else ""
            problems.append(f"{len(keys)} {label}: {', '.join(keys[:10])}{more}")
    if problems and strict:
        raise UsageError(f"${checkpoint.field_name} {checkpoint.path}: does not fit the model: "
                         + "; ".join(problems) + " (pass $non_strict to load what fits)")
    expected = model.state_dict()
    fitting = {k: v for k, v in checkpoint.state_dict.items()
               if k in expected and v.shape == expected[k].shape}
    bad = nonfinite_entries(fitting)
    if bad:
        raise UsageError(f"${checkpoint.field_name} {checkpoint.path}: NaN or infinite values in "
                         f"{', '.join(bad[:10])}" + (f" (+{len(bad) - 10} more)"
                                                     if len(bad) > 10 else "")
                         + ": a damaged or diverged checkpoint")
    model.load_state_dict(fitting, strict=False)
    return problems


def save_safetensors(path: str | Path, state: Mapping[str, torch.Tensor], model_name: str,
                     config: Mapping[str, Any], extra: Mapping[str, str] | None = None,
                     overwrite: bool = False) -> Path:
    """Write ``state`` as safetensors, atomically, with the model name and config as metadata.

    Tensors are made contiguous and de-aliased (safetensors refuses shared storage).

    Raises:
        RuntimeFailure: a tensor holds NaN or inf (nothing is written: a weights file
            dreamprune writes is always usable).
    """
    bad = nonfinite_entries(dict(state))
    if bad:
        raise RuntimeFailure(f"{path}: not written: non-finite values in "
                             f"{', '.join(bad[:5])}" + (f" (+{len(bad) - 5} more)"
                                                        if len(bad) > 5 else ""))
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    metadata = {METADATA_MODEL: model_name, METADATA_CONFIG: json.dumps(dict(config)),
                **(extra or {})}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata),
                        overwrite)
