"""evaluate_pairs: the scoring protocol options, tiling, out-of-memory errors; the CLI flags."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dreamprune_cli.cli import app
from dreamprune_cli.data.pairs import pair_folders
from dreamprune_cli.engine.evaluate import evaluate_pairs, is_out_of_memory
from dreamprune_cli.engine.tiling import Tiling
from dreamprune_cli.errors import RuntimeFailure
from dreamprune_cli.metrics import ssim
from tests.conftest import save_rgb

CPU = torch.device("cpu")


class _Shift(nn.Module):
    """Adds a constant: 0.7 of an 8-bit level lands between two levels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.7 / 255


class _Raises(nn.Module):
    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise self.error


@pytest.fixture
def flat_pairs(tmp_path: Path) -> list:
    """Two 16x16 pairs, input = target = level 100 everywhere."""
    for name in ("a", "b"):
        save_rgb(tmp_path / "in" / f"{name}.png", np.full((16, 16, 3), 100 / 255))
        save_rgb(tmp_path / "tg" / f"{name}.png", np.full((16, 16, 3), 100 / 255))
    return pair_folders(tmp_path / "in", tmp_path / "tg")


def test_quantization_round_versus_truncate_by_hand(flat_pairs: list) -> None:
    # 100.7 rounds to 101 (one level off everywhere: 20 log10(255) dB) and truncates to 100.
    rounded = evaluate_pairs(_Shift(), flat_pairs, "rgb", 0, CPU)
    truncated = evaluate_pairs(_Shift(), flat_pairs, "rgb", 0, CPU, quantization="truncate")
    assert rounded.psnr == pytest.approx(20 * math.log10(255), abs=1e-6)
    assert math.isinf(truncated.psnr)
    assert (rounded.quantization, truncated.quantization) == ("round", "truncate")


def test_ssim_variant_is_applied_and_recorded(pair_dirs: tuple[Path, Path]) -> None:
    from dreamprune_cli.data.pairs import read_pair

    pairs = pair_folders(*pair_dirs)
    result = evaluate_pairs(nn.Identity(), pairs, "y", 0, CPU, ssim_variant="matlab")
    degraded, target = read_pair(pairs[0])
    assert result.per_image[0].ssim == pytest.approx(
        float(ssim(degraded, target, "y", variant="matlab")), abs=1e-12)
    assert result.as_dict()["ssim_variant"] == "matlab"
    basic = evaluate_pairs(nn.Identity(), pairs, "y", 0, CPU)
    assert basic.ssim_variant == "basicsr" and basic.ssim != pytest.approx(result.ssim)


def test_tiled_evaluation_scores_like_whole_images(pair_dirs: tuple[Path, Path]) -> None:
    pairs = pair_folders(*pair_dirs)
    whole = evaluate_pairs(nn.Identity(), pairs, "rgb", 0, CPU)
    tiled = evaluate_pairs(nn.Identity(), pairs, "rgb", 0, CPU, tiling=Tiling(8, 4))
    assert [s.psnr for s in tiled.per_image] == [s.psnr for s in whole.per_image]
    assert (tiled.tile, tiled.tile_overlap, whole.tile) == (8, 4, None)


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                 "memory: you tried to allocate 206158430208 bytes"),
    MemoryError()])
def test_out_of_memory_names_the_image_and_suggests_tiling(flat_pairs: list,
                                                           error: BaseException) -> None:
    assert is_out_of_memory(error)
    with pytest.raises(RuntimeFailure) as info:
        evaluate_pairs(_Raises(error), flat_pairs, "rgb", 0, CPU)
    message = str(info.value)
    assert message.startswith(str(flat_pairs[0].input_path))
    assert "out of memory" in message and "16x16" in message and "tile 512" in message
    assert "\n" not in message
    with pytest.raises(RuntimeFailure, match="smaller tile than 8"):
        evaluate_pairs(_Raises(error), flat_pairs, "rgb", 0, CPU, tiling=Tiling(8, 0))


def test_other_runtime_errors_are_not_called_out_of_memory(flat_pairs: list) -> None:
    with pytest.raises(RuntimeError, match="shape"):
        evaluate_pairs(_Raises(RuntimeError("shape mismatch")), flat_pairs, "rgb", 0, CPU)


# --------------------------------------------------------------------------- CLI
def test_evaluate_flags_in_json(runner, pair_dirs) -> None:
    inputs, targets = pair_dirs
    args = ["evaluate", "--model", "identity", "--input-dir", str(inputs), "--target-dir",
            str(targets), "--json"]
    default = json.loads(runner.invoke(app, args).stdout)
    assert (default["ssim_variant"], default["quantization"], default["pairing"]) == (
        "basicsr", "round", "stem")
    assert default["tile"] is None
    result = runner.invoke(app, args + ["--ssim-variant", "matlab", "--quantize", "truncate",
                                        "--tile", "16", "--tile-overlap", "4"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["ssim_variant"], data["quantization"], data["tile"], data["tile_overlap"]) == (
        "matlab", "truncate", 16, 4)
    assert data["psnr"] == pytest.approx(default["psnr"])  # identity: already 8-bit levels
    assert data["ssim"] != pytest.approx(default["ssim"])


def test_evaluate_sots_pairing_and_bad_values(runner, tmp_path: Path) -> None:
    clean = np.random.default_rng(0).uniform(0, 1, (36, 40, 3))
    save_rgb(tmp_path / "clear" / "1400.png", clean)
    save_rgb(tmp_path / "hazy" / "1400_2.png", clean[10:26, 10:30])
    args = ["evaluate", "--model", "identity", "--input-dir", str(tmp_path / "hazy"),
            "--target-dir", str(tmp_path / "clear"), "--json"]
    result = runner.invoke(app, args + ["--pairing", "sots"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["pairing"] == "sots" and data["psnr"] == "inf"  # identical after the crop
    for flag, value in (("--pairing", "reside"), ("--tile", "0"), ("--quantize", "floor"),
                        ("--ssim-variant", "skimage")):
        bad = runner.invoke(app, args + [flag, value])
        assert bad.exit_code == 2 and flag.lstrip("-").replace("-", "_") in bad.output
    same = runner.invoke(app, ["evaluate", "--model", "identity", "--input-dir",
                               str(tmp_path / "hazy"), "--target-dir", str(tmp_path / "hazy")])
    assert same.exit_code == 2 and "same folder" in same.output


def test_pipeline_scores_with_the_protocol_options(runner, tmp_path: Path, pair_dirs) -> None:
    from tests.runs.test_commands import TINY, _ffa_weights

    inputs, targets = pair_dirs
    out = tmp_path / "run"
    result = runner.invoke(app, [
        "pipeline", "--weights", str(_ffa_weights(tmp_path)), "--steps", "1",
        "--calibration-steps", "1", "--flops-size", "64", "--out", str(out),
        "--eval-input-dir", str(inputs), "--eval-target-dir", str(targets),
        "--ssim-variant", "matlab", "--quantize", "truncate", "--tile", "16",
        "--tile-overlap", "8", *TINY[2:], "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["ssim_variant"], data["quantization"]) == ("matlab", "truncate")
    report = json.loads((out / "report.json").read_text())
    assert (report["teacher"]["tile"], report["distilled"]["tile_overlap"]) == (16, 8)
    assert "SSIM matlab, outputs quantized by truncate" in (out / "report.md").read_text()


def test_metrics_thread_count_is_restored() -> None:
    from dreamprune_cli.engine.evaluate import one_intra_op_thread

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(KeyError):
            with one_intra_op_thread():
                assert torch.get_num_threads() == 1
                raise KeyError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
