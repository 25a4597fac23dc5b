"""The public Python API: the README example's calls, on a tiny model, and lazy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import dreamprune_cli
from dreamprune_cli import (UsageError, apply_threads, count_macs, distill, dream, evaluate,
                            load_model, prune_model)


def test_readme_example_calls(pair_dirs) -> None:
    """The README's example with a small random FFA and few steps (same calls)."""
    previous = torch.get_num_threads()
    try:
        assert apply_threads(1).threads == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)
    torch.manual_seed(0)
    teacher = load_model("ffa", "tiny", use_bundled=False, overrides={"blocks": 1})
    student = prune_model(teacher, 0.6, "lamp", flops_size=64).student
    dense, pruned = count_macs(teacher, size=64), count_macs(student, size=64)
    assert pruned.macs_dense == dense.macs_dense
    assert abs(pruned.macs / dense.macs - 0.6) < 0.01
    dreams = dream(teacher, count=3, steps=2, size=32, batch_size=2, device="cpu")
    assert dreams.dreams.shape == (3, 3, 32, 32) and dreams.dreams.dtype == torch.float32
    assert 0.0 <= float(dreams.dreams.min()) and float(dreams.dreams.max()) <= 1.0
    before = {k: v.clone() for k, v in student.network.state_dict().items()}
    history = distill(teacher, student, dreams=dreams.dreams, steps=3, batch_size=2,
                      device="cpu")
    assert [h["step"] for h in history] == [1, 2, 3] and all(h["kd"] >= 0 for h in history)
    after = student.network.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert count_macs(student, size=64).macs == pruned.macs  # masks kept while training
    online = distill(teacher, student, steps=2, size=32, batch_size=2, device="cpu")
    assert set(online[-1]) == {"step", "dream", "orth", "kd"}
    inputs, targets = pair_dirs
    score = evaluate(student, inputs, targets, metric_space="rgb")
    assert score.count == 3 and len(score.per_image) == 3 and score.psnr > 0
    identity = evaluate(load_model("identity"), inputs, targets, metric_space="rgb")
    assert identity.params == 0 and identity.macs == 0


def test_distill_inputs() -> None:
    """``inputs=``: synthetic images (no dream losses) or half of each; none but dreams
    offline."""
    torch.manual_seed(0)
    teacher = load_model("ffa", "tiny", use_bundled=False, overrides={"blocks": 1})
    student = prune_model(teacher, 0.6, "lamp", flops_size=64).student
    synthetic = distill(teacher, student, steps=2, size=16, batch_size=2, device="cpu",
                        inputs="synthetic")
    assert [set(h) for h in synthetic] == [{"step", "kd"}] * 2
    mixed = distill(teacher, student, steps=1, size=16, batch_size=2, device="cpu",
                    inputs="mixed")
    assert set(mixed[-1]) == {"step", "dream", "orth", "kd"}
    moved = distill(teacher, student, steps=1, size=16, batch_size=2, device="cpu",
                    inputs="adversarial", adversarial_eps=0.05, adversarial_steps=2)
    assert set(moved[-1]) == {"step", "gap", "kd"} and moved[-1]["gap"] >= 0.0
    with pytest.raises(UsageError, match="^lambda_feat 1: the feature term does not run"):
        distill(teacher, student, steps=1, inputs="adversarial", lambda_feat=1.0)
    with pytest.raises(UsageError, match="^adversarial_eps 2: expected a radius"):
        distill(teacher, student, steps=1, inputs="adversarial", adversarial_eps=2.0)
    with pytest.raises(UsageError, match="^inputs synthetic: dreams distills offline"):
        distill(teacher, student, dreams=torch.rand(2, 3, 16, 16), inputs="synthetic")
    with pytest.raises(UsageError, match="^inputs 'noise'"):
        distill(teacher, student, steps=1, size=16, batch_size=2, device="cpu", inputs="noise")


def test_evaluate_needs_both_folders(pair_dirs) -> None:
    with pytest.raises(UsageError, match="go together"):
        evaluate(load_model("identity"), pair_dirs[0])


def test_exports_are_listed_and_resolve() -> None:
    for name in dreamprune_cli.__all__:
        assert getattr(dreamprune_cli, name) is not None, name
    with pytest.raises(AttributeError):
        dreamprune_cli.no_such_function  # noqa: B018


def test_import_and_help_do_not_import_torch() -> None:
    code = ("import sys, dreamprune_cli, dreamprune_cli.cli; "
            "print('torch' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


def test_evaluate_uses_the_models_scoring_protocol(pair_dirs) -> None:
    """The API scores as the command does: the registry's quantization and SSIM by default
    (PReNet truncates to 8 bits), overridable."""
    import dreamprune_cli as dp

    model = dp.load_model("prn_r", "tiny")  # random weights: the Python API allows them
    inputs, targets = pair_dirs
    default = dp.evaluate(model, inputs, targets, device="cpu")
    truncated = dp.evaluate(model, inputs, targets, quantize="truncate", device="cpu")
    rounded = dp.evaluate(model, inputs, targets, quantize="round", device="cpu")
    assert default.quantization == "truncate" and default.psnr == truncated.psnr
    assert rounded.quantization == "round" and rounded.psnr != truncated.psnr


def test_distill_recovery_schedule_and_seeded_dreams() -> None:
    """``lr_schedule``/``warmup_steps``/``ema_decay`` and ``dream_init`` from Python: the
    student ends as the average, its masks kept; bad values name the setting."""
    torch.manual_seed(0)
    teacher = load_model("ffa", "tiny", use_bundled=False, overrides={"blocks": 1})
    pruned = prune_model(teacher, 0.6, "lamp", flops_size=64)
    student = pruned.student
    history = distill(teacher, student, steps=3, size=16, batch_size=2, device="cpu",
                      lr_schedule="cosine", warmup_steps=1, ema_decay=0.5,
                      dream_init="synthetic")
    assert [h["step"] for h in history] == [1, 2, 3]
    assert count_macs(student, size=64).macs == count_macs(pruned.student, size=64).macs
    offline = distill(teacher, student, dreams=torch.rand((2, 3, 16, 16)), steps=2,
                      batch_size=2, device="cpu", ema_decay=0.9)
    assert len(offline) == 2
    with pytest.raises(UsageError, match="^warmup_steps 3: the cosine schedule"):
        distill(teacher, student, steps=3, device="cpu", lr_schedule="cosine",
                warmup_steps=3)
