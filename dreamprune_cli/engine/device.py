"""Device and precision choices, made once per run from the settings (no global state)."""

from __future__ import annotations

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
            raise UsageError(f"--device {spec}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {spec}: MPS is not available on this machine")
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
