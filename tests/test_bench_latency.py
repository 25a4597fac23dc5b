"""bench/latency.py: input sizes, operator families and the paired timing record."""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path

import pytest
import torch
from torch import nn

_PATH = Path(__file__).resolve().parents[1] / "bench" / "latency.py"
_SPEC = importlib.util.spec_from_file_location("bench_latency", _PATH)
latency = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(latency)


@pytest.mark.parametrize(("spec", "multiple", "expected"), [
    ("256", 16, (256, 256)),
    ("rain100l", 1, (321, 481)),
    ("rain100l", 4, (324, 484)),
    ("rain100l", 16, (336, 496)),
    ("100x30", 8, (104, 32)),
])
def test_input_shape_rounds_up_to_the_size_multiple(spec: str, multiple: int,
                                                    expected: tuple[int, int]) -> None:
    assert latency.input_shape(spec, multiple) == expected


def test_input_shape_refuses_a_bad_spec() -> None:
    with pytest.raises(ValueError):
        latency.input_shape("large", 1)


@pytest.mark.parametrize(("name", "family"), [
    ("aten::mkldnn_convolution", "convolutions"),
    ("aten::conv_transpose2d", "convolutions"),
    ("aten::bmm", "matrix products (attention)"),
    ("aten::_softmax", "softmax"),
    ("aten::instance_norm", "norms"),
    ("aten::leaky_relu", "activations"),
    ("aten::sigmoid", "activations"),
    ("aten::adaptive_avg_pool2d", "pooling and resampling"),
    ("aten::cat", "concatenation and copies"),
    ("aten::mul", "element-wise arithmetic"),
    ("aten::empty_strided", "concatenation and copies"),
    ("aten::resolve_conj", "other"),
])
def test_op_family(name: str, family: str) -> None:
    assert latency.op_family(name) == family


def test_paired_ratios_is_the_median_of_per_pair_ratios() -> None:
    teacher, student = nn.Conv2d(3, 8, 3), nn.Conv2d(3, 4, 3)
    timing = latency.paired_ratios(teacher, student, torch.rand(1, 3, 64, 64), repeats=3,
                                   warmup=1)
    assert len(timing["pair_ratios"]) == len(timing["teacher_times_s"]) == 3
    # the ratio is the median of the per-pair ratios (rounded to 4 decimals in the record)
    assert timing["latency_ratio"] == pytest.approx(statistics.median(timing["pair_ratios"]),
                                                    abs=1e-4)
    assert timing["teacher_s"] == pytest.approx(statistics.median(timing["teacher_times_s"]),
                                                abs=1e-6)
    cpu = [s / t for s, t in zip(timing["student_cpu_s"], timing["teacher_cpu_s"])]
    assert len(cpu) == 3
    assert timing["cpu_ratio"] == pytest.approx(statistics.median(cpu), rel=5e-2)  # rounded
    assert timing["latency_ratio_min"] == pytest.approx(
        min(timing["student_times_s"]) / min(timing["teacher_times_s"]), rel=2e-2)  # rounded


def test_profile_split_sums_self_times_by_family() -> None:
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.InstanceNorm2d(4))
    split = latency.profile_split(network, torch.rand(1, 3, 16, 16))
    assert {"convolutions", "activations", "norms"} <= set(split)
    assert all(seconds >= 0 for seconds in split.values())
