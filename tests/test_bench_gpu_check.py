"""bench/gpu_check.py: the precisions compared, the collectives in a group of one, the
student of each granularity and the record's tables (on the CPU: the script's dry run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

_PATH = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.py"
_SPEC = importlib.util.spec_from_file_location("bench_gpu_check", _PATH)
gpu_check = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(gpu_check)


def test_the_cpu_compares_four_float32_precisions() -> None:
    precisions = gpu_check.joint_precisions(torch.device("cpu"))
    assert list(precisions) == ["fp32", "channels-last", "amp", "amp + channels-last"]
    assert all(p.autocast_dtype is None and not p.use_grad_scaler for p in precisions.values())
    assert [p.channels_last for p in precisions.values()] == [False, True, False, True]


def test_the_collectives_in_a_group_of_one_give_what_one_process_has() -> None:
    row = gpu_check.collectives_row(torch.device("cpu"))
    assert row["backend"] == "gloo"
    assert row["mean"] == [1.5, 2.5]
    assert row["first_signal"] == 15
    assert row["gather_rows_grad_ok"] and row["ddp_grad_finite"]
    assert row["broadcast"] == {"step": 7}
    assert row["all_gather"] == [1.0, 1.0]
    assert not torch.distributed.is_initialized()


def test_a_depth_student_of_tiny_prenet_runs_fewer_stages() -> None:
    teacher = gpu_check.seeded_teacher("prenet", "tiny")
    student = gpu_check.make_student(teacher, "depth", 0.58, 32)
    x = torch.rand(1, 3, 32, 32)
    dense = gpu_check.count_costs(teacher.network, (3, 32, 32)).macs_dense
    assert gpu_check.count_costs(student, (3, 32, 32)).macs < 0.6 * dense
    output, stages = student(x)  # PReNet returns (output, every stage's output)
    assert output.shape == x.shape
    assert len(stages) == 1  # 1 of the tiny variant's 3 stages: 0.333 of the MACs


def test_hinet_has_no_depth_student() -> None:
    teacher = gpu_check.seeded_teacher("hinet", "tiny")
    with pytest.raises(gpu_check.UsageError, match="nothing to remove"):
        gpu_check.make_student(teacher, "depth", 0.58, 32)


def test_the_tables_print_every_row(capsys: pytest.CaptureFixture[str]) -> None:
    record = {"device_name": "cpu", "torch": "2.13", "date": "2026-12-07",
              "joint": [{"shape": "8x64", "precision": "fp32", "ms": 20.0},
                        {"shape": "8x64", "precision": "amp", "ms": 10.0}],
              "latency": [{"model": "m", "granularity": "depth", "input": [256, 256],
                           "precision": "fp32", "macs_ratio": 0.5, "latency_ratio": 0.55,
                           "teacher_ms": 3.0},
                          {"model": "m", "granularity": "channel", "skipped": "budget"}],
              "collectives": {"backend": "gloo"},
              "torchrun": {"returncode": 0, "wall_s": 1.0}}
    gpu_check.print_tables(record)
    out = capsys.readouterr().out
    assert "| 8x64 | amp | 10.0 | 0.50 |" in out
    assert "| m | depth | 256x256 | fp32 | 0.500 | 0.550 | 1.10 | 3.00 |" in out
    assert "skipped: budget" in out
