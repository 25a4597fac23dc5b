"""The runtime of a run: the device, the precision of training steps (autocast dtype, gradient
scaling, memory format), chosen once per run from the settings (no global state), and the
helpers that apply that precision (no-ops on CPU)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from dreamprune_cli.errors import UsageError


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> CUDA when present else CPU; explicit devices are checked to exist."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"$device {spec}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"$device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"$device {spec}: MPS is not available on this machine")
    return device


@dataclass(frozen=True)
class Precision:
    """How training steps run: autocast dtype (None = float32) and memory format."""

    autocast_dtype: torch.dtype | None
    use_grad_scaler: bool
    channels_last: bool


def resolve_precision(device: torch.device, amp: str = "auto",
                      channels_last: str = "auto") -> Precision:
    """Mixed precision and channels-last on CUDA (bf16 where supported); float32 elsewhere."""
    if device.type != "cuda":
        return Precision(None, False, channels_last == "on")
    if amp == "off":
        dtype = None
    elif amp == "fp16" or (amp == "auto" and not torch.cuda.is_bf16_supported()):
        dtype = torch.float16
    else:
        dtype = torch.bfloat16
    return Precision(dtype, dtype == torch.float16, channels_last != "off")


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
