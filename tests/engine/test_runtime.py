"""``dreamprune_cli.engine.runtime``: the device and the precision of a run, no-ops on the CPU."""

from __future__ import annotations

import pytest
import torch

from dreamprune_cli.engine.runtime import (Precision, autocast, make_scaler, resolve_device,
                                           resolve_precision, to_memory_format)
from dreamprune_cli.errors import UsageError


def test_devices() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        with pytest.raises(UsageError, match=f"only {count} CUDA device"):
            resolve_device(f"cuda:{count}")
    else:
        with pytest.raises(UsageError, match="^device cuda: CUDA is not available"):
            resolve_device("cuda")


def test_cpu_precision_is_float32_and_changes_nothing() -> None:
    cpu = torch.device("cpu")
    precision = resolve_precision(cpu, amp="bf16")
    assert precision == Precision(None, False, False)
    assert resolve_precision(cpu, channels_last="on").channels_last
    x = torch.rand(1, 3, 8, 8)
    with autocast(cpu, precision):
        assert (x @ x.transpose(-1, -2)).dtype == torch.float32
    assert not make_scaler(cpu, precision).is_enabled()
    assert to_memory_format(x, precision) is x


def test_channels_last_for_4d_tensors_only() -> None:
    precision = Precision(None, False, True)
    x = torch.rand(2, 3, 8, 8)
    assert to_memory_format(x, precision).is_contiguous(memory_format=torch.channels_last)
    flat = torch.rand(3, 8)
    assert to_memory_format(flat, precision) is flat


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_precision() -> None:
    cuda = torch.device("cuda")
    assert resolve_precision(cuda, amp="fp16") == Precision(torch.float16, True, True)
    assert resolve_precision(cuda, amp="off", channels_last="off") == Precision(None, False,
                                                                                False)
    if torch.cuda.is_bf16_supported():
        assert resolve_precision(cuda).autocast_dtype == torch.bfloat16
