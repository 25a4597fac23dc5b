"""Teacher against student latency: paired, interleaved forward passes on one input."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class PairedLatency:
    """Forward-pass times (seconds) of a teacher and a student on one input, run in
    interleaved pairs; every number below is derived from the per-run times.

    ``ratio`` is the median of the per-pair ratios ``student / teacher`` (the number to read:
    machine load hits both halves of a pair alike); ``ratio_fastest`` the ratio of the two
    fastest runs; ``cpu_ratio`` the median per-pair ratio of the process's CPU time (on one
    CPU thread it leaves out the time other jobs held the core; ``None`` on CUDA).
    """

    input_shape: tuple[int, ...]
    device: str
    threads: int
    teacher_times: tuple[float, ...]
    student_times: tuple[float, ...]
    teacher_cpu_times: tuple[float, ...]
    student_cpu_times: tuple[float, ...]

    @property
    def pairs(self) -> int:
        return len(self.teacher_times)

    @property
    def teacher_seconds(self) -> float:
        return statistics.median(self.teacher_times)

    @property
    def student_seconds(self) -> float:
        return statistics.median(self.student_times)

    @property
    def pair_ratios(self) -> tuple[float, ...]:
        return tuple(s / t for s, t in zip(self.student_times, self.teacher_times))

    @property
    def ratio(self) -> float:
        return statistics.median(self.pair_ratios)

    @property
    def ratio_fastest(self) -> float:
        return min(self.student_times) / min(self.teacher_times)

    @property
    def cpu_ratio(self) -> float | None:
        ratios = [s / t for s, t in zip(self.student_cpu_times, self.teacher_cpu_times) if t > 0]
        return None if self.device == "cuda" or not ratios else statistics.median(ratios)

    def as_dict(self) -> dict[str, Any]:
        """The per-run times and every ratio derived from them (``report.json``)."""
        derived = ("pairs", "teacher_seconds", "student_seconds", "ratio", "ratio_fastest",
                   "cpu_ratio", "pair_ratios")
        return {**asdict(self), **{name: getattr(self, name) for name in derived}}

    def describe(self) -> str:
        """One line for people, e.g. ``student time: 0.75 of the teacher's, CPU time 0.75
        (39.6 ms / 53.1 ms; median of 22 interleaved pairs, 1x3x256x256, cpu, 1 thread)``."""
        shape = "x".join(str(n) for n in self.input_shape)
        threads = f", {self.threads} thread{'s' if self.threads > 1 else ''}"
        where = self.device + (threads if self.device == "cpu" else "")
        cpu_ratio = self.cpu_ratio
        cpu = "" if cpu_ratio is None else f", CPU time {cpu_ratio:.2f}"
        return (f"student time: {self.ratio:.2f} of the teacher's{cpu} "
                f"({self.student_seconds * 1e3:.1f} ms / {self.teacher_seconds * 1e3:.1f} ms; "
                f"median of {self.pairs} interleaved pairs, {shape}, {where})")


def paired_latency(teacher: nn.Module, student: nn.Module, x: torch.Tensor, pairs: int = 5,
                   warmup: int = 1, min_seconds: float = 0.0,
                   max_pairs: int = 100) -> PairedLatency:
    """Time ``teacher(x)`` and ``student(x)`` in ``pairs`` interleaved pairs.

    Args:
        teacher, student: modules on ``x``'s device, called under ``torch.inference_mode``
            (put them in ``eval()`` mode first).
        x: the input, e.g. float32 of shape ``(1, 3, 256, 256)`` in [0, 1].
        pairs: timed pairs (at least 1); the order within a pair alternates (teacher first,
            then student first) so that a drift in machine load does not favour either.
        warmup: untimed forwards of each first (at least 0): allocator and kernel caches.
        min_seconds: keep timing pairs past ``pairs`` until the timed runs took this long
            (seconds), at most ``max_pairs`` pairs: short forwards get enough pairs for a
            steady median on a busy machine.

    Returns:
        The per-run wall-clock and CPU times (seconds) and their ratios; on CUDA every run is
        bracketed by ``torch.cuda.synchronize``.

    Raises:
        ValueError: ``pairs < 1``, ``warmup < 0`` or ``max_pairs < pairs``.
    """
    if pairs < 1 or warmup < 0 or max_pairs < pairs:
        raise ValueError(f"pairs must be >= 1, warmup >= 0 and max_pairs >= pairs, got "
                         f"{pairs}, {warmup} and {max_pairs}")
    cuda = x.device.type == "cuda"

    def timed(network: nn.Module) -> tuple[float, float]:
        if cuda:
            torch.cuda.synchronize(x.device)
        start, start_cpu = time.perf_counter(), time.process_time()
        network(x)
        if cuda:
            torch.cuda.synchronize(x.device)
        return time.perf_counter() - start, time.process_time() - start_cpu

    times: dict[str, list[tuple[float, float]]] = {"teacher": [], "student": []}
    with torch.inference_mode():
        for _ in range(warmup):
            teacher(x)
            student(x)
        start = time.perf_counter()
        index = 0
        while index < pairs or (time.perf_counter() - start < min_seconds
                                and index < max_pairs):
            order = [("teacher", teacher), ("student", student)]
            if index % 2:
                order.reverse()
            for name, network in order:
                times[name].append(timed(network))
            index += 1
    return PairedLatency(
        input_shape=tuple(x.shape), device=x.device.type, threads=torch.get_num_threads(),
        teacher_times=tuple(t for t, _ in times["teacher"]),
        student_times=tuple(t for t, _ in times["student"]),
        teacher_cpu_times=tuple(c for _, c in times["teacher"]),
        student_cpu_times=tuple(c for _, c in times["student"]))


LATENCY_PAIRS, LATENCY_SECONDS = 5, 2.0
"""Least interleaved pairs, and least seconds of timed runs, of :func:`square_latency`."""


def square_latency(teacher: nn.Module, student: nn.Module, size: int, device: torch.device,
                   seed: int) -> PairedLatency:
    """Teacher against student on one seeded ``1 x 3 x size x size`` image in [0, 1] (the
    MAC-counting size): :data:`LATENCY_PAIRS` or more interleaved pairs after one warm-up,
    until :data:`LATENCY_SECONDS` of timed runs, on ``device`` and the current threads.
    Both modules are put in ``eval()`` mode."""
    x = torch.rand((1, 3, size, size), generator=torch.Generator().manual_seed(seed))
    teacher.eval()
    student.eval()
    return paired_latency(teacher, student, x.to(device), pairs=LATENCY_PAIRS, warmup=1,
                          min_seconds=LATENCY_SECONDS)
