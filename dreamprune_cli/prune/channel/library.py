"""The Torch-Pruning library, imported on first use (only channel pruning needs it).

Its own module so that :mod:`~dreamprune_cli.prune.channel.tracing` (which builds the dependency graph)
and :mod:`~dreamprune_cli.prune.channel.graph` (whose graph class tracing builds) both read it
from below, and the dependency between those two goes one way.
"""

from __future__ import annotations

from typing import Any

from dreamprune_cli.errors import UsageError


def torch_pruning() -> Any:
    """The ``torch_pruning`` module (imported lazily: only channel pruning needs it).

    Raises:
        UsageError: the package is not installed.
    """
    try:
        import torch_pruning as tp
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise UsageError("$granularity channel needs the 'torch-pruning' package "
                         "(pip install torch-pruning)") from exc
    return tp
