"""Paired teacher/student timing (``dreamprune_cli.engine.latency``)."""

from __future__ import annotations

import statistics

import pytest
import torch
from torch import nn

from dreamprune_cli.engine.latency import paired_latency


def _pair() -> tuple[nn.Module, nn.Module]:
    return nn.Conv2d(3, 16, 3, padding=1).eval(), nn.Conv2d(3, 4, 3, padding=1).eval()


def test_ratio_is_the_median_of_the_per_pair_ratios() -> None:
    teacher, student = _pair()
    timing = paired_latency(teacher, student, torch.rand(1, 3, 32, 32), pairs=3, warmup=0)
    assert timing.pairs == len(timing.pair_ratios) == len(timing.teacher_times) == 3
    ratios = [s / t for s, t in zip(timing.student_times, timing.teacher_times)]
    assert timing.ratio == pytest.approx(statistics.median(ratios))
    assert timing.teacher_seconds == statistics.median(timing.teacher_times)
    assert timing.ratio_fastest == pytest.approx(min(timing.student_times)
                                                 / min(timing.teacher_times))
    assert timing.input_shape == (1, 3, 32, 32) and timing.device == "cpu"
    record = timing.as_dict()
    assert record["pairs"] == 3 and len(record["student_cpu_times"]) == 3


def test_min_seconds_adds_pairs_up_to_max_pairs() -> None:
    teacher, student = _pair()
    timing = paired_latency(teacher, student, torch.rand(1, 3, 16, 16), pairs=2, warmup=0,
                            min_seconds=60.0, max_pairs=6)
    assert timing.pairs == 6


def test_describe_names_the_ratio_input_and_threads() -> None:
    teacher, student = _pair()
    line = paired_latency(teacher, student, torch.rand(1, 3, 16, 16), pairs=1).describe()
    assert line.startswith("student time: ") and "1x3x16x16" in line and "cpu" in line
    assert "median of 1 interleaved pairs" in line


@pytest.mark.parametrize("pairs, warmup, max_pairs", [(0, 1, 100), (2, -1, 100), (5, 0, 4)])
def test_bad_counts_are_refused(pairs: int, warmup: int, max_pairs: int) -> None:
    teacher, student = _pair()
    with pytest.raises(ValueError, match="pairs must be"):
        paired_latency(teacher, student, torch.rand(1, 3, 8, 8), pairs=pairs, warmup=warmup,
                       max_pairs=max_pairs)
