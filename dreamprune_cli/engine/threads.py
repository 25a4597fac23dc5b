"""How many CPU threads PyTorch may use, chosen once per run.

PyTorch's intra-op threads meet at a barrier after every parallel operation. When another
process takes one of the cores away, every operation waits for the descheduled thread, and a
step can become many times slower than with one thread (docs/RESULTS.md, "CPU threads on a
busy machine"). So the default is not "every core" but the cores that are both ours and idle:

1. ``--threads N`` (or ``threads`` in a config file, ``DREAMPRUNE_THREADS``), when given;
2. else ``OMP_NUM_THREADS``, when set to a positive integer (the usual way a job scheduler or
   a user caps OpenMP programs);
3. else ``min(allotted, idle) - 1``, at least 1: ``allotted`` is the number of CPUs this
   process may run on (its affinity mask, e.g. a Slurm or taskset allotment, capped by a
   cgroup CPU quota such as ``docker --cpus``), and ``idle`` is how many of those CPUs were
   idle over a short sample of ``/proc/stat`` (0.25 s), rounded down unless within 0.2 of
   the next integer (where ``/proc/stat`` cannot be read: the machine's CPU count minus its
   one-minute load average). One CPU is left free because the choice is made once, at the
   start: a process that arrives later then takes the free CPU instead of one of ours. On a
   2-core machine that is always one thread: 1.4 times slower per step than two on an idle
   machine, but two threads were 3 to 20 times slower whenever anything else ran.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dreamprune_cli.errors import UsageError

log = logging.getLogger(__name__)

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
PROC_STAT = Path("/proc/stat")
SAMPLE_SECONDS = 0.25


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count and why it was chosen (``--threads``, ``OMP_NUM_THREADS`` or
    ``auto``); ``idle`` is the number of allotted CPUs found idle (auto only)."""

    threads: int
    source: str
    allotted: int
    idle: float | None = None

    def describe(self) -> str:
        """One line for the log, e.g. ``1 CPU thread (auto: 2 CPUs allotted, 0.9 idle; ...)``."""
        noun = "thread" if self.threads == 1 else "threads"
        if self.source == "auto":
            idle = "unknown" if self.idle is None else f"{self.idle:.1f}"
            return (f"{self.threads} CPU {noun} (auto: {self.allotted} CPUs allotted, {idle} "
                    "idle; set --threads to override)")
        return f"{self.threads} CPU {noun} (from {self.source})"


def _cgroup_quota(path: Path = CGROUP_CPU_MAX) -> int | None:
    """CPUs allowed by a cgroup v2 quota (``"200000 100000"`` -> 2); ``None`` if unlimited."""
    try:
        quota, period = path.read_text(encoding="ascii").split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, math.ceil(int(quota) / int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def cpu_allotment() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup quota (at least 1)."""
    try:
        allotted = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        allotted = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(allotted, quota) if quota else allotted)


def _cpu_times(path: Path = PROC_STAT) -> dict[int, tuple[int, int]]:
    """``{cpu: (idle ticks, total ticks)}`` from ``/proc/stat`` (idle includes iowait)."""
    times = {}
    for line in path.read_text(encoding="ascii").splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        ticks = [int(v) for v in fields[:8]]
        times[int(name[3:])] = (ticks[3] + ticks[4], sum(ticks))
    return times


def idle_between(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]],
                 cpus: set[int]) -> float:
    """Sum over ``cpus`` of the idle fraction between two :func:`_cpu_times` snapshots."""
    idle = 0.0
    for cpu in cpus & set(before) & set(after):
        total = after[cpu][1] - before[cpu][1]
        if total > 0:
            idle += (after[cpu][0] - before[cpu][0]) / total
        else:  # no tick in the window: nothing ran there
            idle += 1.0
    return idle


def idle_cpus(cpus: set[int] | None = None, seconds: float = SAMPLE_SECONDS,
              path: Path = PROC_STAT) -> float | None:
    """How many of ``cpus`` (default: this process's affinity) were idle over ``seconds``,
    e.g. 1.0 on a 2-CPU allotment where another process keeps one CPU busy; ``None`` where
    ``/proc/stat`` is unavailable."""
    try:
        cpus = set(os.sched_getaffinity(0)) if cpus is None else cpus
        before = _cpu_times(path)
        time.sleep(seconds)
        after = _cpu_times(path)
    except (AttributeError, OSError, ValueError, IndexError):
        return None
    return idle_between(before, after, cpus)


def _idle_from_load(cpus: int) -> float | None:
    """The machine's CPUs minus its one-minute load average (a lagging fallback)."""
    try:
        return max(0.0, cpus - os.getloadavg()[0])
    except (AttributeError, OSError):
        return None


def choose_threads(requested: int | None = None, env: Mapping[str, str] | None = None,
                   allotted: int | None = None, idle: float | None = None) -> ThreadChoice:
    """Decide the thread count (see the module docstring for the rules).

    Args:
        requested: ``--threads``; ``None`` when not given.
        env: the environment (default ``os.environ``), read for ``OMP_NUM_THREADS``.
        allotted, idle: the CPU allotment and how many of its CPUs are idle, instead of
            measuring them (for tests).

    Raises:
        UsageError: ``requested`` below 1.
    """
    env = os.environ if env is None else env
    allotted = cpu_allotment() if allotted is None else allotted
    if requested is not None:
        if requested < 1:
            raise UsageError(f"$threads {requested}: expected a positive integer")
        return ThreadChoice(requested, "--threads", allotted)
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp:
        try:
            value = int(omp)
        except ValueError:
            value = 0
        if value >= 1:
            return ThreadChoice(value, "OMP_NUM_THREADS", allotted)
        log.warning("OMP_NUM_THREADS=%r is not a positive integer; ignored", omp)
    if idle is None:
        idle = idle_cpus()
    if idle is None:
        idle = _idle_from_load(os.cpu_count() or allotted)
    if idle is None:
        return ThreadChoice(allotted, "auto", allotted, None)
    usable = min(allotted, int(math.floor(idle + 0.2)))
    return ThreadChoice(max(1, usable - 1), "auto", allotted, idle)


def apply_threads(requested: int | None = None) -> ThreadChoice:
    """Choose the thread count and set it for PyTorch (``torch.set_num_threads``)."""
    import torch

    choice = choose_threads(requested)
    torch.set_num_threads(choice.threads)
    log.info("using %s", choice.describe())
    return choice
