"""Autocast and gradient scaling for one optimisation branch (CUDA only; no-ops on CPU)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from dreamprune_cli.engine.device import Precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision) -> Iterator[None]:
    """Mixed precision where the precision says so, float32 otherwise."""
    if precision.autocast_dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=precision.autocast_dtype):
        yield


def make_scaler(device: torch.device, precision: Precision) -> torch.amp.GradScaler:
    """A gradient scaler, enabled only for float16 autocast."""
    return torch.amp.GradScaler(device.type, enabled=precision.use_grad_scaler)


def to_memory_format(tensor: torch.Tensor, precision: Precision) -> torch.Tensor:
    """Channels-last for 4-D tensors when the precision asks for it."""
    if precision.channels_last and tensor.dim() == 4:
        return tensor.contiguous(memory_format=torch.channels_last)
    return tensor
