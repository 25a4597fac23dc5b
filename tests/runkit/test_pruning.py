"""``dreamprune_cli.runkit.pruning``: a spec pruned to its MAC target, re-planned to its
latency target against measured (here: simulated) times, and repaired when it asks."""

from __future__ import annotations

import pytest
import torch

from dreamprune_cli.models.loading import load_model
from dreamprune_cli.runkit import pruning
from dreamprune_cli.settings import resolve_prune_spec, resolve_settings


def test_the_mac_target_without_a_latency_target() -> None:
    resolved = resolve_settings({"model": "ffa", "variant": "tiny", "flops_target": 0.5,
                                 "allocator": "lamp", "flops_size": 32}, env={})
    spec = resolve_prune_spec(resolved)
    teacher = load_model("ffa", variant="tiny", use_bundled=False)
    result = pruning.prune_teacher(teacher, spec, torch.device("cpu"))
    assert result.granularity == "unstructured" and result.allocator == "lamp"
    assert result.macs_ratio == pytest.approx(0.5, abs=0.005)
    assert "latency_target" not in result.details and "reconstruction" not in result.details


def test_reconstruction_runs_after_a_structured_cut() -> None:
    resolved = resolve_settings({"model": "prenet", "variant": "tiny", "granularity": "depth",
                                 "flops_target": 0.67, "flops_size": 16,
                                 "depth_calibration_size": 16, "reconstruct": True,
                                 "reconstruct_count": 2, "reconstruct_size": 16}, env={})
    teacher = load_model("prenet", variant="tiny", use_bundled=False)
    result = pruning.prune_teacher(teacher, resolve_prune_spec(resolved), torch.device("cpu"))
    report = result.details["reconstruction"]
    assert isinstance(report, dict) and report
    assert result.seconds > 0


def test_latency_target_replans_until_the_measured_ratio_is_met(monkeypatch) -> None:
    from dreamprune_cli.engine.latency import PairedLatency
    from dreamprune_cli.settings import resolve_prune_spec, resolve_settings

    def slow_student(teacher, student, size, device, seed):  # time = 1.5 x the MAC ratio
        from dreamprune_cli.flops import count_costs

        ratio = (count_costs(student.network, (3, size, size)).macs
                 / count_costs(teacher.network, (3, size, size)).macs)
        return PairedLatency(input_shape=(1, 3, size, size), device="cpu", threads=1,
                             teacher_times=(1.0,), student_times=(1.5 * ratio,),
                             teacher_cpu_times=(1.0,), student_cpu_times=(1.5 * ratio,))

    monkeypatch.setattr(pruning, "square_latency", slow_student)
    resolved = resolve_settings({"model": "prenet", "variant": "tiny", "granularity": "depth",
                                 "latency_target": 0.9, "flops_size": 16,
                                 "depth_calibration_size": 16}, env={})
    teacher = load_model("prenet", variant="tiny", use_bundled=False)
    result = pruning.prune_teacher(teacher, resolve_prune_spec(resolved),
                                   torch.device("cpu"))
    record = result.details["latency_target"]
    tries = record["tries"]
    # the first plan keeps at most 0.9 of the MACs and runs at 1.5 x that: too slow; each next
    # plan aims at the MAC ratio reached x 0.9 / the latency ratio measured, until it is met
    assert tries[0]["flops_target"] == 0.9 and tries[0]["latency_ratio"] > 0.9
    assert len(tries) >= 2
    for before, after in zip(tries, tries[1:]):
        assert after["flops_target"] == pytest.approx(
            before["macs_ratio"] * 0.9 / before["latency_ratio"])
    assert all(t["latency_ratio"] == pytest.approx(1.5 * t["macs_ratio"]) for t in tries)
    assert record["met"] and record["latency_ratio"] == tries[-1]["latency_ratio"] <= 0.9
    assert result.macs_ratio == pytest.approx(tries[-1]["macs_ratio"])
