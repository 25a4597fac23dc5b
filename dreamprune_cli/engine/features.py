"""Capturing the teacher's penultimate features with a forward pre-hook."""

from __future__ import annotations

from types import TracebackType

import torch
from torch import nn

from dreamprune_cli.errors import UsageError


class PenultimateFeatures:
    """Context manager recording the *input* of ``layer`` (the registry's penultimate layer).

    When the layer runs several times in one forward, the last call wins.

    Example:
        >>> with PenultimateFeatures(network, "post.1") as hook:  # doctest: +SKIP
        ...     network(x)
        ...     features = hook.features
    """

    def __init__(self, network: nn.Module, layer: str | None) -> None:
        if layer is None:
            raise UsageError("this model names no penultimate layer; the diversity loss needs "
                             "one (set $lambda_orth 0)")
        modules = dict(network.named_modules())
        if layer not in modules:
            raise UsageError(f"penultimate layer {layer!r} not found in the network")
        self._module = modules[layer]
        self._handle: torch.utils.hooks.RemovableHandle | None = None
        self.features: torch.Tensor | None = None

    def _hook(self, module: nn.Module, args: tuple) -> None:
        self.features = args[0]

    def __enter__(self) -> PenultimateFeatures:
        self._handle = self._module.register_forward_pre_hook(self._hook)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle = None
