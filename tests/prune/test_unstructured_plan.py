"""The prune engine and command: exact targets everywhere, outputs that reload and agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from dreamprune_cli.cli import app
from dreamprune_cli.data.pairs import pair_folders
from dreamprune_cli.engine.evaluate import evaluate_pairs
from dreamprune_cli.prune.unstructured.plan import (ALLOCATORS, apply_allocation,
                                                    measure_plan_drift, plan_pruning, prune_model)
from dreamprune_cli.prune.result import write_prune_outputs
from dreamprune_cli.flops import count_costs
from dreamprune_cli.models import build_model
from dreamprune_cli.models.loading import load_model, save_model
from dreamprune_cli.prune.unstructured.masks import matches

MODELS = ["ffa", "hinet", "mprnet", "aganet", "durn_s", "durn_s_p"]
SIZE = 64  # MACs counted at 3x64x64 keep the checks fast; the command defaults to 256
COARSE_LEVELS = (1.0, 0.6, 0.3, 0.0)


@pytest.mark.parametrize("name", MODELS)
def test_every_allocator_hits_the_target_and_leaves_excluded_layers(name: str) -> None:
    loaded = load_model(name, "tiny")
    plan = plan_pruning(loaded, SIZE)
    drift = measure_plan_drift(plan, torch.rand(1, 3, 16, 16), keep_levels=COARSE_LEVELS)
    teacher = dict(loaded.network.named_modules())
    assert plan.dense_names and all(matches(n, loaded.info.prune_exclude)
                                    for n in plan.dense_names)
    for allocator in ALLOCATORS:
        for target in (0.58, 0.40):
            result = apply_allocation(plan, target, allocator, drift)
            assert abs(result.macs_ratio - target) <= 0.005 * target, (allocator, target)
            student = dict(result.student.network.named_modules())
            for layer in result.layers:
                if not layer.pruned:
                    assert torch.equal(student[layer.name].weight, teacher[layer.name].weight)
    # The counter, run afresh on the last student, agrees with the result.
    report = count_costs(result.student.network, (3, SIZE, SIZE))
    assert report.macs == result.macs_after and report.macs_dense == result.macs_dense


def test_user_exclusions_are_kept_dense() -> None:
    loaded = load_model("ffa", "tiny")
    result = prune_model(loaded, 0.5, "global", flops_size=SIZE, exclude=["g2"])
    dense = [layer.name for layer in result.layers if not layer.pruned]
    assert "pre.0" in dense and "post.1" in dense
    assert {n for n in dense if n.startswith("g2.")} == \
        {n for n, m in loaded.network.named_modules()
         if n.startswith("g2.") and isinstance(m, nn.Conv2d)}
    assert all(layer.keep_ratio == 1.0 for layer in result.layers if not layer.pruned)
    unexcluded = prune_model(loaded, 0.5, "global", flops_size=SIZE, use_default_exclude=False)
    assert all(layer.pruned for layer in unexcluded.layers)


def _independent_weight_macs(network: nn.Module, size: int) -> dict[str, int]:
    """Non-zero weights x output pixels (input pixels for transposed convs, rows for linear)."""
    macs: dict[str, int] = {}
    handles = []
    for name, module in network.named_modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            def hook(mod: nn.Module, args: tuple, out: torch.Tensor, key: str = name) -> None:
                nonzero = int(torch.count_nonzero(mod.weight))
                if isinstance(mod, nn.Conv2d):
                    pixels = out.shape[0] * out.shape[2] * out.shape[3]
                elif isinstance(mod, nn.ConvTranspose2d):
                    pixels = args[0].shape[0] * args[0].shape[2] * args[0].shape[3]
                else:
                    pixels = out.numel() // out.shape[-1]
                macs[key] = macs.get(key, 0) + nonzero * pixels
            handles.append(module.register_forward_hook(hook))
    with torch.no_grad():
        network(torch.rand(1, 3, size, size))
    for handle in handles:
        handle.remove()
    return macs


@pytest.mark.parametrize("name,allocator", [("hinet", "lamp"), ("durn_s", "erk")])
def test_student_file_agrees_with_report_at_256(tmp_path: Path, name: str,
                                                allocator: str) -> None:
    loaded = load_model(name, "tiny")
    result = prune_model(loaded, 0.58, allocator)  # counted at 3x256x256
    paths = write_prune_outputs(result, tmp_path / "out")
    report = json.loads(paths["report"].read_text())
    assert abs(report["macs_ratio"] - 0.58) <= 0.005 * 0.58
    fresh = build_model(name, "tiny")
    fresh.load_state_dict(load_file(str(paths["student"])), strict=True)
    counted = _independent_weight_macs(fresh, 256)
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert set(counted) == set(layers)
    reported = sum(layer["weight_macs_kept"] for layer in layers.values())
    assert abs(sum(counted.values()) - reported) <= 0.005 * reported
    for layer_name, value in counted.items():
        assert value == layers[layer_name]["weight_macs_kept"], layer_name
    masks = load_file(str(paths["masks"]))
    assert set(masks) == {n for n, layer in layers.items() if layer["pruned"]}
    with safe_open(str(paths["student"]), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["dreamprune.model"] == name
    assert metadata["dreamprune.prune.allocator"] == allocator
    assert float(metadata["dreamprune.prune.flops_target"]) == 0.58


def test_cli_prune_then_evaluate_reproduces_the_student(runner, tmp_path: Path,
                                                        pair_dirs) -> None:
    teacher = load_model("ffa", "tiny")
    teacher_file = save_model(teacher, tmp_path / "teacher.safetensors")
    out = tmp_path / "pruned"
    result = runner.invoke(app, ["prune", "--model", "ffa", "--weights", str(teacher_file),
                                 "--flops-target", "0.58", "--allocator", "lamp", "--out",
                                 str(out), "--flops-size", str(SIZE), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in ("macs_before", "macs_after", "macs_ratio", "params_before", "params_after",
                "allocator", "flops_size", "output"):
        assert key in data
    assert data["allocator"] == "lamp" and data["flops_size"] == SIZE
    assert abs(data["macs_ratio"] - 0.58) <= 0.005 * 0.58
    assert data["params_after"] < data["params_before"]
    assert sorted(p.name for p in out.iterdir()) == ["masks.safetensors", "report.json",
                                                     "student.safetensors"]

    # The same pruning in-process (deterministic), scored on the same pairs.
    expected = prune_model(load_model("ffa", weights=teacher_file), 0.58, "lamp",
                           flops_size=SIZE)
    inputs, targets = pair_dirs
    pairs = pair_folders(inputs, targets)
    want = evaluate_pairs(expected.student.adapter(), pairs, "rgb", 0, torch.device("cpu"))
    scored = runner.invoke(app, ["evaluate", "--weights", str(out / "student.safetensors"),
                                 "--input-dir", str(inputs), "--target-dir", str(targets),
                                 "--metric-space", "rgb", "--json"])
    assert scored.exit_code == 0, scored.output
    got = json.loads(scored.stdout)
    assert [s["psnr"] for s in got["per_image"]] == pytest.approx(
        [s.psnr for s in want.per_image], abs=1e-9)
    assert got["macs_256"] == want.macs_256 and got["macs_256"] < teacher_macs_256(teacher)
    x = torch.rand(1, 3, 24, 24)
    reloaded = load_model(None, weights=out / "student.safetensors").adapter()
    with torch.no_grad():
        assert torch.equal(reloaded(x), expected.student.adapter()(x))


def teacher_macs_256(teacher) -> int:  # type: ignore[no-untyped-def]
    return count_costs(teacher.network, (3, 256, 256)).macs


def test_cli_unreachable_target_exit_2(runner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["prune", "--model", "ffa", "--variant", "tiny",
                                 "--flops-target", "0.01", "--allocator", "uniform",
                                 "--out", str(tmp_path / "o"), "--flops-size", str(SIZE)])
    assert result.exit_code == 2
    assert "smallest reachable F is 0.0" in result.output and "Traceback" not in result.output


def test_cli_bad_inputs_exit_2(runner, tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    base = ["prune", "--model", "ffa", "--variant", "tiny", "--allocator", "uniform",
            "--flops-size", str(SIZE)]
    cases = [
        (["--flops-target", "0.5", "--out", str(busy)], "not empty"),
        (["--flops-target", "0", "--out", str(tmp_path / "a")], "flops_target"),
        (["--flops-target", "0.5", "--out", str(tmp_path / "b"), "--exclude", "nope*"],
         "--exclude 'nope*'"),
        (["--flops-target", "0.5"], "--out is required"),
        (["--flops-target", "0.5", "--out", str(tmp_path / "c"), "--allocator", "random"],
         "allocator"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, [*base, *extra])
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output, (extra, result.output)
    assert (busy / "keep.txt").read_text() == "mine"


def test_cli_adaptive_with_calibration_dir(runner, tmp_path: Path, pair_dirs) -> None:
    inputs, _ = pair_dirs
    result = runner.invoke(app, ["prune", "--model", "durn_s", "--variant", "tiny",
                                 "--random-weights",
                                 "--flops-target", "0.4", "--allocator", "adaptive",
                                 "--out", str(tmp_path / "o"), "--flops-size", str(SIZE),
                                 "--calibration", str(inputs), "--calibration-count", "2",
                                 "--calibration-size", "24", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert abs(data["macs_ratio"] - 0.4) <= 0.005 * 0.4
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["drift"]["images"] == 2 and report["drift"]["image_size"] == [24, 24]


def test_adaptive_without_calibration_uses_synthetic_images() -> None:
    loaded = load_model("durn_s", "tiny")
    result = prune_model(loaded, 0.5, "adaptive", flops_size=SIZE, calibration_count=2,
                         calibration_size=16, keep_levels=COARSE_LEVELS)
    assert result.drift is not None and result.drift.images == 2
    assert result.drift.image_size == (16, 16)
    assert abs(result.macs_ratio - 0.5) <= 0.005 * 0.5
    again = prune_model(loaded, 0.4, "adaptive", flops_size=SIZE, drift=result.drift)
    assert again.drift is result.drift and abs(again.macs_ratio - 0.4) <= 0.005 * 0.4
