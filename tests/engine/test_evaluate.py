"""The paired PSNR gap between two evaluations of the same images."""

from __future__ import annotations

import math

import pytest

from dreamprune_cli.engine.evaluate import EvaluationResult, ImageScore, psnr_gap


def _evaluation(psnrs: dict[str, float]) -> EvaluationResult:
    scores = [ImageScore(name, value, 0.5) for name, value in psnrs.items()]
    mean = sum(psnrs.values()) / len(psnrs) if psnrs else float("nan")
    return EvaluationResult(metric_space="rgb", crop_border=0, count=len(scores), psnr=mean,
                            ssim=0.5, seconds=0.0, macs=0, macs_256=0, params=0,
                            params_nonzero=0, per_image=scores)


def test_gap_is_the_mean_difference_with_its_paired_standard_error() -> None:
    # differences b - a per image: -1, 0, +1 -> mean 0, sample std 1, s.e. 1/sqrt(3)
    student = _evaluation({"a": 20.0, "b": 22.0, "c": 25.0})
    teacher = _evaluation({"c": 24.0, "a": 21.0, "b": 22.0})  # order does not matter
    gap = psnr_gap(student, teacher)
    assert gap.mean == pytest.approx(0.0, abs=1e-12)
    assert gap.standard_error == pytest.approx(1 / math.sqrt(3))
    assert gap.count == 3
    assert gap.describe("student - teacher") == (
        "student - teacher: +0.00 dB (paired s.e. 0.58 dB, 3 images)")


def test_a_constant_shift_has_no_spread() -> None:
    gap = psnr_gap(_evaluation({"a": 19.5, "b": 24.5}), _evaluation({"a": 20.0, "b": 25.0}))
    assert gap.mean == pytest.approx(-0.5)
    assert gap.standard_error == pytest.approx(0.0)


def test_no_standard_error_from_one_image_or_an_infinite_score() -> None:
    one = psnr_gap(_evaluation({"a": 19.0}), _evaluation({"a": 20.0}))
    assert one.mean == pytest.approx(-1.0) and one.standard_error is None
    assert one.describe("x") == "x: -1.00 dB"
    perfect = psnr_gap(_evaluation({"a": math.inf, "b": 30.0}),
                       _evaluation({"a": 20.0, "b": 25.0}))
    assert perfect.standard_error is None and perfect.mean == math.inf


def test_different_images_are_refused() -> None:
    with pytest.raises(ValueError, match="same images"):
        psnr_gap(_evaluation({"a": 19.0}), _evaluation({"b": 20.0}))
