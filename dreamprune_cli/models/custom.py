"""User-supplied models: ``package.module:factory`` or ``path/to/file.py:ClassOrFactory``.

A custom model runs every subcommand, the whole method included. What the registry says of
a built-in family, a custom model may declare as attributes of its class (or instance):

* ``size_multiple`` (int): spatial sizes it needs to be divisible by; inputs are padded;
* ``penultimate_layer`` (str): the module whose *input* is the penultimate feature map
  (diversity loss); found automatically as the last convolution a forward pass calls;
* ``output_index`` (int): which element of a returned list/tuple is the restored image;
* ``task`` (``derain``, ``raindrop``, ``dehaze``): the synthetic sets it is scored and
  calibrated on (default ``derain``);
* ``metric_space`` (``y``, ``rgb``): the default metric space (default ``rgb``);
* ``depth_blocks``, ``depth_branches`` (tuples of module-name globs) and ``depth_repeats``
  (constructor keys of stages repeated with shared weights, read back from the attribute of
  the same name): what ``--granularity depth`` may remove beyond the residual blocks it finds
  by tracing (see :class:`~dreamprune_cli.models.registry.ModelInfo`).

A *layer* class of a custom model may declare ``preserves_channels = True`` (output channel
``i`` from input channel ``i`` alone, no parameter with a channel dimension) so that channel
pruning passes through it (:mod:`dreamprune_cli.prune.channel.tracing`).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import logging
import math
import sys
import typing
from pathlib import Path
from typing import Any

from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.registry import MetricSpace, ModelInfo, Task

log = logging.getLogger(__name__)

DECLARABLE = ("size_multiple", "penultimate_layer", "output_index", "task", "metric_space",
              "depth_blocks", "depth_branches", "depth_repeats")
_CHOICES = {"task": typing.get_args(Task), "metric_space": typing.get_args(MetricSpace)}


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


def _declared_value(spec: str, network: nn.Module, name: str) -> Any:
    value = getattr(network, name)
    where = f"custom model {spec!r}: {type(network).__name__}.{name} = {value!r}"
    if name in ("size_multiple", "output_index"):
        if isinstance(value, bool) or not isinstance(value, int) \
                or value < (1 if name == "size_multiple" else 0):
            raise UsageError(f"{where}: expected an integer >= "
                             f"{1 if name == 'size_multiple' else 0}")
    elif name in ("depth_blocks", "depth_branches", "depth_repeats"):
        if isinstance(value, str) or not isinstance(value, (tuple, list)) \
                or not all(isinstance(item, str) for item in value):
            raise UsageError(f"{where}: expected a tuple of strings")
        if name == "depth_repeats" and not all(
                isinstance(getattr(network, key, None), int) for key in value):
            raise UsageError(f"{where}: each key must also be an integer attribute of the "
                             "network (its current count)")
        return tuple(value)
    elif name == "penultimate_layer":
        if not isinstance(value, str) or value not in dict(network.named_modules()):
            raise UsageError(f"{where}: expected the dotted name of one of its modules")
    elif value not in _CHOICES[name]:
        raise UsageError(f"{where}: expected one of {', '.join(_CHOICES[name])}")
    return value


def declared_info(info: ModelInfo, network: nn.Module) -> ModelInfo:
    """The entry of custom model ``info.name`` completed from its built ``network``: the
    attributes it declares (module docstring), and its penultimate layer found automatically
    (:func:`find_penultimate_layer`) when it declares none.

    Raises:
        UsageError: a declared attribute of the wrong type or value (named).
    """
    changes = {name: _declared_value(info.name, network, name)
               for name in DECLARABLE if getattr(network, name, None) is not None}
    info = dataclasses.replace(info, **changes)
    if info.penultimate_layer is None:
        found = find_penultimate_layer(network, info.size_multiple)
        if found is not None:
            log.debug("custom model %s: penultimate features = the input of %s (its last "
                      "convolution)", info.name, found)
            info = dataclasses.replace(info, penultimate_layer=found)
    return info


def find_penultimate_layer(network: nn.Module, size_multiple: int = 1,
                           side: int = 64) -> str | None:
    """Name of the last Conv2d/ConvTranspose2d a forward pass on a ``side``-pixel image
    (rounded up to ``size_multiple``) calls; ``None`` if it has none or the pass fails.

    Its input is the penultimate feature map, as the registry's entries name it.
    """
    from dreamprune_cli.flops import execution_order

    side = size_multiple * math.ceil(side / size_multiple)
    modules = dict(network.named_modules())
    try:
        order = execution_order(network, (3, side, side))
    except Exception as exc:  # the user's forward may reject the probe; report it later
        log.debug("no penultimate layer found: a %dx%d forward failed (%s)", side, side, exc)
        return None
    convolutions = [name for name in order
                    if isinstance(modules[name], (nn.Conv2d, nn.ConvTranspose2d))]
    return convolutions[-1] if convolutions else None
