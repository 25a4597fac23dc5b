"""Tensors out of whole-module pickles (``torch.save(model)``), running nothing from the file.

Many deraining repositories ship ``torch.save(model)`` files, often of an ``nn.DataParallel``
wrapper, whose network class lived in the author's ``__main__``: ``torch.load`` cannot import
that class, and would run whatever the pickle names if it could. This module is a
``pickle_module`` for ``torch.load(f, pickle_module=..., weights_only=False)``, so torch's own
machinery reads the storages of both formats (zip and the legacy pre-1.6 one); only the
unpickler differs:

* globals that rebuild tensors and plain values (torch's weights-only allow-list, plus NumPy
  scalars and dtypes) resolve to the real objects;
* any other global becomes an inert placeholder class. A placeholder may be *instantiated as
  a record* (``NEWOBJ``/``copyreg`` reconstruction, state set by ``BUILD``): it then keeps its
  state and nothing of the named class runs. *Calling* a placeholder (``REDUCE``, ``INST``,
  ``OBJ``: how a pickle runs a function) raises :class:`RefusedPickle`, as does naming a
  module that only offers code execution (``os``, ``subprocess``, ``builtins`` beyond plain
  types, ...).

:func:`plain_state` then flattens the records of ``nn.Module`` objects into a state dict
(``conv1.weight``, with ``module.`` prefixes as the wrapper saved them).
"""

from __future__ import annotations

import _compat_pickle
import functools
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import torch

# Module roots whose globals are never records: naming one is refused outright.
_REFUSED_ROOTS = frozenset({
    "os", "posix", "nt", "subprocess", "builtins", "__builtin__", "sys", "shutil", "importlib",
    "runpy", "pickle", "_pickle", "marshal", "ctypes", "socket", "pty", "code", "codeop",
    "types", "webbrowser", "multiprocessing", "io", "_io", "pathlib", "tempfile", "signal",
    "operator", "functools", "inspect", "pdb", "timeit", "posixpath", "ntpath", "asyncio",
    "threading", "_thread", "urllib", "http", "ftplib", "smtplib", "zipimport", "pkgutil",
})


class RefusedPickle(pickle.UnpicklingError):
    """The pickle asks to call or import something beyond tensors and records."""


class Record:
    """An object of a class the pickle names, rebuilt as data: nothing of the class runs.

    ``state`` is what ``BUILD`` gave it (for an ``nn.Module``: its ``__dict__``, with
    ``_parameters``, ``_buffers`` and ``_modules``); ``global_name`` the class's
    ``module.qualname``.
    """

    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Record:
        record = object.__new__(cls)
        object.__setattr__(record, "state", None)
        object.__setattr__(record, "new_args", args)
        return record

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "state", state)

    def __repr__(self) -> str:
        return f"<record of {self.global_name}>"


class _PlaceholderMeta(type):
    """Placeholder classes: may be instantiated as records, never called."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise RefusedPickle(f"it calls {getattr(cls, 'global_name', cls.__name__)}")


@functools.lru_cache(maxsize=1)
def _allowed_globals() -> dict[str, Any]:
    """``module.name`` -> object for everything that only rebuilds tensors or plain values."""
    from torch import _weights_only_unpickler as weights_only

    from dreamprune_cli.models.numpy_globals import numpy_safe_globals

    allowed = dict(weights_only._get_allowed_globals())
    for obj in numpy_safe_globals():
        allowed[f"{obj.__module__}.{obj.__qualname__}"] = obj
    allowed.update({"builtins.frozenset": frozenset, "builtins.slice": slice,
                    "builtins.object": object, "copyreg._reconstructor": _reconstructor,
                    "copyreg.__newobj__": _newobj})
    return allowed


def _placeholder(module: str, name: str) -> type:
    return _PlaceholderMeta(name.rpartition(".")[2] or "Record", (Record,),
                            {"global_name": f"{module}.{name}", "__module__": module})


def _reconstructor(cls: Any, base: Any, state: Any) -> Record:
    """``copyreg._reconstructor`` (pickle protocols 0 and 1) for placeholder classes only."""
    if not (isinstance(cls, _PlaceholderMeta) and base is object):
        raise RefusedPickle(f"it reconstructs {cls!r} from {base!r}")
    record = Record.__new__(cls)
    if state is not None:
        record.__setstate__(state)
    return record


def _newobj(cls: Any, *args: Any) -> Record:
    """``copyreg.__newobj__`` (protocols 0 and 1 spelling of NEWOBJ), placeholders only."""
    if not isinstance(cls, _PlaceholderMeta):
        raise RefusedPickle(f"it creates {cls!r}")
    return Record.__new__(cls, *args)


class Unpickler(pickle.Unpickler):
    """The restricted unpickler ``torch.load`` subclasses (its ``pickle_module.Unpickler``)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 spellings
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        key = f"{module}.{name}"
        allowed = _allowed_globals()
        if key in allowed:
            return allowed[key]
        if module == "torch" and name.endswith("Storage"):  # legacy format: storage types
            storage = getattr(torch, name, None)
            if storage in torch._storage_classes:
                return storage
        if module.split(".")[0] in _REFUSED_ROOTS:
            raise RefusedPickle(f"it imports {key}")
        return _placeholder(module, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "persistent_load" and callable(value):
            value = _without_source_check(value)
        super().__setattr__(name, value)


def _without_source_check(persistent_load: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """torch's ``persistent_load`` minus the legacy format's check of a module class's source
    (which inspects, and may write a patch file for, the class): the class is returned."""

    def load(saved_id: Any) -> Any:
        if isinstance(saved_id, tuple) and saved_id:
            if saved_id[0] in ("module", b"module"):  # (typename, class, file, source)
                return saved_id[1]
            if isinstance(saved_id[0], _PlaceholderMeta):  # tar format: (class, file, source)
                return saved_id[0]
        return persistent_load(saved_id)

    return load


def load(file: Any, **kwargs: Any) -> Any:
    """``pickle.load`` with :class:`Unpickler` (what torch's legacy format reader calls)."""
    return Unpickler(file, **kwargs).load()


def is_module_record(value: object) -> bool:
    """Whether ``value`` is the record of an ``nn.Module`` (its state has its submodules)."""
    return isinstance(value, Record) and isinstance(value.state, Mapping) \
        and ("_parameters" in value.state or "_modules" in value.state)


def module_state_dict(record: Record, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict ``nn.Module.state_dict()`` would give for a module ``record``:
    parameters, persistent buffers and submodules' entries, ``None`` entries skipped."""
    state = record.state
    out: dict[str, torch.Tensor] = {}
    for name, value in (state.get("_parameters") or {}).items():
        if isinstance(value, torch.Tensor):
            out[prefix + name] = value.detach()
    skipped = state.get("_non_persistent_buffers_set") or set()
    for name, value in (state.get("_buffers") or {}).items():
        if isinstance(value, torch.Tensor) and name not in skipped:
            out[prefix + name] = value.detach()
    for name, child in (state.get("_modules") or {}).items():
        if is_module_record(child):
            out.update(module_state_dict(child, f"{prefix}{name}."))
    return out


def plain_state(raw: object) -> tuple[object, list[str]]:
    """``raw`` with module records (at the top or as values of a dict container) replaced by
    their state dicts; and the class names of those records (``module.qualname``)."""
    if is_module_record(raw):
        return module_state_dict(raw), [_class_chain(raw)]  # type: ignore[arg-type]
    if isinstance(raw, Mapping):
        names: list[str] = []
        out = {}
        for key, value in raw.items():
            if is_module_record(value):
                names.append(_class_chain(value))
                value = module_state_dict(value)
            out[key] = value
        return out, names
    return raw, []


def _class_chain(record: Record) -> str:
    """``DataParallel(DeRain)`` for wrappers holding one module, else the class name."""
    name = record.global_name.rpartition(".")[2]
    children = [c for c in (record.state.get("_modules") or {}).values() if c is not None]
    if name in ("DataParallel", "DistributedDataParallel") and len(children) == 1 \
            and is_module_record(children[0]):
        return f"{name}({_class_chain(children[0])})"
    return record.global_name


def read_whole_module_pickle(path: Any, **pickle_load_args: Any) -> tuple[object, list[str]]:
    """Load the torch pickle at ``path`` with module records flattened (:func:`plain_state`).

    Returns:
        The container (a state dict, or a dict holding one) and the class names read.

    Raises:
        RefusedPickle: the pickle would call or import code (nothing ran).
        Exception: whatever torch raises for a damaged file.
    """
    import sys

    raw = torch.load(path, map_location="cpu", weights_only=False,
                     pickle_module=sys.modules[__name__], **pickle_load_args)
    return plain_state(raw)
