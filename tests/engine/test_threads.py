"""--threads: the rules that choose PyTorch's CPU thread count, and the settings plumbing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from dreamprune_cli.cli import app
from dreamprune_cli.engine.threads import (_cgroup_quota, _cpu_times, apply_threads,
                                           choose_threads, idle_between, idle_cpus)
from dreamprune_cli.errors import UsageError


def test_flag_wins_over_environment() -> None:
    choice = choose_threads(3, env={"OMP_NUM_THREADS": "1"}, allotted=2, idle=2.0)
    assert (choice.threads, choice.source) == (3, "--threads")


def test_omp_num_threads_when_no_flag() -> None:
    choice = choose_threads(None, env={"OMP_NUM_THREADS": "4"}, allotted=2, idle=0.0)
    assert (choice.threads, choice.source) == (4, "OMP_NUM_THREADS")


@pytest.mark.parametrize(("allotted", "idle", "expected"), [
    (2, 1.97, 1),   # idle 2-core machine: one thread, one CPU left free
    (2, 1.0, 1),    # one competing busy process: one thread
    (2, 0.05, 1),   # overloaded: never below one
    (8, 7.9, 7),    # an idle 8-CPU allotment on a busy node: all but one
    (16, 2.85, 2),  # 2.85 idle CPUs count as 3, minus one
    (16, 4.5, 3),   # 4.5 idle count as 4, minus one
    (1, 1.0, 1),
])
def test_auto_uses_idle_allotted_cpus(allotted: int, idle: float, expected: int) -> None:
    choice = choose_threads(None, env={}, allotted=allotted, idle=idle)
    assert (choice.threads, choice.source) == (expected, "auto")
    assert f"{allotted} CPUs allotted, {idle:.1f} idle" in choice.describe()


def test_idle_cpus_from_proc_stat(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  10 0 10 100 0 0 0 0 0 0\n"
                    "cpu0 0 0 0 100 0 0 0 0 0 0\ncpu1 10 0 10 0 0 0 0 0 0 0\n"
                    "intr 1 2 3\nctxt 5\n")
    before = _cpu_times(stat)
    assert before == {0: (100, 100), 1: (0, 20)}
    # cpu0 idle for all of 100 new ticks, cpu1 busy for 75 of 100 (25 idle incl. iowait)
    after = {0: (200, 200), 1: (25, 120)}
    assert idle_between(before, after, {0, 1}) == pytest.approx(1.25)
    assert idle_between(before, after, {1}) == pytest.approx(0.25)
    assert idle_between(before, before, {0}) == 1.0  # no ticks: nothing ran


def test_idle_cpus_measures_this_machine() -> None:
    idle = idle_cpus(seconds=0.05)
    assert idle is None or 0.0 <= idle <= len(os.sched_getaffinity(0)) + 1e-9


def test_bad_omp_value_falls_back_to_auto() -> None:
    choice = choose_threads(None, env={"OMP_NUM_THREADS": "lots"}, allotted=4, idle=4.0)
    assert (choice.threads, choice.source) == (3, "auto")


def test_zero_threads_refused() -> None:
    with pytest.raises(UsageError, match="threads 0"):
        choose_threads(0, env={}, allotted=2)


def test_cgroup_quota(tmp_path: Path) -> None:
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert _cgroup_quota(quota) == 2
    quota.write_text("max 100000\n")
    assert _cgroup_quota(quota) is None
    assert _cgroup_quota(tmp_path / "absent") is None


def test_apply_threads_sets_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    previous = torch.get_num_threads()
    try:
        assert apply_threads(2).threads == 2 and torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert apply_threads(None).threads == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


def test_threads_setting_sources(runner, tmp_path: Path) -> None:
    def shown(*args: str, env: dict[str, str] | None = None) -> tuple[object, str]:
        result = runner.invoke(app, [*args, "config", "show", "--json"], env=env)
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        return data["settings"]["common"]["threads"], data["sources"]["threads"]

    assert shown() == (None, "default")
    assert shown(env={"DREAMPRUNE_THREADS": "2"}) == (2, "env DREAMPRUNE_THREADS")
    config = tmp_path / "c.toml"
    config.write_text("[common]\nthreads = 3\n")
    assert shown("--config", str(config)) == (3, f"config {config}")
    assert shown("--threads", "1", env={"DREAMPRUNE_THREADS": "2"}) == (1, "flag --threads")
    bad = runner.invoke(app, ["config", "show"], env={"DREAMPRUNE_THREADS": "0"})
    assert bad.exit_code == 2 and "threads" in bad.output


def test_evaluate_logs_its_thread_count(runner, pair_dirs) -> None:
    inputs, targets = pair_dirs
    previous = torch.get_num_threads()
    try:
        result = runner.invoke(app, ["evaluate", "--model", "identity", "--threads", "1",
                                     "--input-dir", str(inputs), "--target-dir",
                                     str(targets)])
    finally:
        torch.set_num_threads(previous)
    assert result.exit_code == 0, result.output
    assert "using 1 CPU thread (from --threads)" in result.output
