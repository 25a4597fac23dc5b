"""Finding NaN and infinite values in tensors, state dicts and nested checkpoint states.

A checkpoint is only worth keeping if every number in it is finite: the loops check their
state with :func:`nonfinite_entries` before they write it, and model outputs are checked
before they are scored or saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def nonfinite_entries(tree: Any, prefix: str = "") -> list[str]:
    """Dotted names of the floating-point tensors in ``tree`` holding NaN or inf.

    ``tree`` may be a tensor or any nesting of mappings, lists and tuples of tensors (an
    optimiser's ``state_dict``, a model's); other leaves are ignored.
    """
    if isinstance(tree, torch.Tensor):
        if tree.is_floating_point() or tree.is_complex():
            return [] if bool(torch.isfinite(tree).all()) else [prefix or "tensor"]
        return []
    found: list[str] = []
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            found += nonfinite_entries(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(tree, (list, tuple)):
        for index, value in enumerate(tree):
            found += nonfinite_entries(value, f"{prefix}[{index}]")
    return found


def describe_nonfinite(tensor: torch.Tensor) -> str:
    """``"12 NaN and 3 inf of 3072 values"`` for a tensor with non-finite entries."""
    nan = int(torch.isnan(tensor).sum())
    inf = int(torch.isinf(tensor).sum())
    parts = [f"{nan} NaN" if nan else "", f"{inf} inf" if inf else ""]
    return f"{' and '.join(p for p in parts if p)} of {tensor.numel()} values"
