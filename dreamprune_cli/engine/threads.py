"""How many CPU threads PyTorch may use, chosen once per run.

PyTorch's intra-op threads meet at a barrier after every parallel operation. When another
process takes one of the cores away, every operation waits for the descheduled thread, and a
step can become many times slower than with one thread (docs/RESULTS.md, "CPU threads on a
busy machine"). So the default is not "every core" but the cores that are both ours and idle:

1. ``--threads N`` (or ``threads`` in a config file, ``DREAMPRUNE_THREADS``), when given;
2. else ``OMP_NUM_THREADS``, when set to a positive integer (the usual way a job scheduler or
   a user caps OpenMP programs);
3. else ``min(allotted, idle)``, at least 1: ``allotted`` is the number of CPUs this process
   may run on (its affinity mask, e.g. a Slurm or taskset allotment, and a cgroup CPU quota
   such as ``docker --cpus``), and ``idle`` is the machine's CPU count minus its one-minute
   load average, rounded to the nearest integer.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dreamprune_cli.errors import UsageError

log = logging.getLogger(__name__)

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count and why it was chosen (``flag``, ``OMP_NUM_THREADS`` or ``auto``)."""

    threads: int
    source: str
    allotted: int
    load: float | None = None

    def describe(self) -> str:
        """One line for the log, e.g. ``1 CPU thread (auto: 2 CPUs allotted, load 1.3)``."""
        noun = "thread" if self.threads == 1 else "threads"
        if self.source == "auto":
            load = "unknown" if self.load is None else f"{self.load:.1f}"
            return (f"{self.threads} CPU {noun} (auto: {self.allotted} CPUs allotted, "
                    f"load average {load}; set --threads to override)")
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


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def choose_threads(requested: int | None = None, env: Mapping[str, str] | None = None,
                   allotted: int | None = None, load: float | None = None,
                   cpu_count: int | None = None) -> ThreadChoice:
    """Decide the thread count (see the module docstring for the rules).

    Args:
        requested: ``--threads``; ``None`` when not given.
        env: the environment (default ``os.environ``), read for ``OMP_NUM_THREADS``.
        allotted, load, cpu_count: override the measured CPU allotment, one-minute load
            average and machine CPU count (for tests).

    Raises:
        UsageError: ``requested`` below 1.
    """
    env = os.environ if env is None else env
    allotted = cpu_allotment() if allotted is None else allotted
    if requested is not None:
        if requested < 1:
            raise UsageError(f"--threads {requested}: expected a positive integer")
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
    load = _load_average() if load is None else load
    cpus = (os.cpu_count() or allotted) if cpu_count is None else cpu_count
    if load is None:
        return ThreadChoice(allotted, "auto", allotted, None)
    idle = int(math.floor(cpus - load + 0.5))
    return ThreadChoice(max(1, min(allotted, idle)), "auto", allotted, load)


def apply_threads(requested: int | None = None) -> ThreadChoice:
    """Choose the thread count and set it for PyTorch (``torch.set_num_threads``)."""
    import torch

    choice = choose_threads(requested)
    torch.set_num_threads(choice.threads)
    log.info("using %s", choice.describe())
    return choice
