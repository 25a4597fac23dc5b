"""An estimate of a pipeline run's time, logged before the work and kept up to date in the
joint loop's progress line (``eta``).

At the start the pipeline times, on throwaway copies of the teacher (its own generator, the
global random state restored, so the run's numbers do not change):

* one joint step after a first warm-up step, split into its input part (dreaming: a forward
  and a backward through the teacher) and its distillation part (the student's forward and
  backward, with a dense copy of the teacher as the student);
* one evaluation image (the first pair), split into the model's forward and the rest
  (reading, quantizing, PSNR and SSIM).

The student's share is scaled by the MAC target for channel and depth pruning (thinner
networks run faster) and not for unstructured pruning (masked weights cost the same). The
estimate is ``K * (input + distill) + calibration dreaming + evaluations`` with
``evaluations = images * (3 * rest + model * (1 + 2 * student factor))`` (teacher, pruned
and student; the teacher counted even when its scores will come from the cache); the
pruning itself and the latency measurement are not counted.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli.data.pairs import ImagePair, read_pair
from dreamprune_cli.engine.evaluate import one_intra_op_thread, restore
from dreamprune_cli.engine.inputs import DREAMING
from dreamprune_cli.engine.training import joint_trainer
from dreamprune_cli.metrics import psnr, quantize_8bit, ssim
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.runkit.context import TrainingContext
from dreamprune_cli.runkit.recovery import resolve_recovery
from dreamprune_cli.settings import ResolvedSettings


@dataclass(frozen=True)
class RunEstimate:
    """Seconds a run should take: ``steps`` joint steps at ``seconds_per_step``, evaluations
    before (``evaluation_before``) and after (``evaluation_after``) the joint loop, and the
    calibration dreaming (``other_seconds``)."""

    steps: int
    seconds_per_step: float
    evaluation_before: float
    evaluation_after: float
    other_seconds: float = 0.0

    @property
    def evaluation_seconds(self) -> float:
        return self.evaluation_before + self.evaluation_after

    @property
    def total(self) -> float:
        """The whole run in seconds."""
        return (self.steps * self.seconds_per_step + self.evaluation_seconds
                + self.other_seconds)

    def describe(self) -> str:
        """``estimated time: ~N min (K joint steps at S s/step, evaluations ~E s)``."""
        return (f"estimated time: {minutes(self.total)} ({self.steps} joint steps at "
                f"{self.seconds_per_step:.2f} s/step, evaluations ~{self.evaluation_seconds:.0f}"
                " s)")


def minutes(seconds: float) -> str:
    """``~N min``: one decimal under 10 minutes (``~0.4 min``), whole minutes above."""
    value = max(seconds, 0.0) / 60
    return f"~{value:.1f} min" if value < 10 else f"~{value:.0f} min"


def _clock(device: torch.device) -> float:
    """Wall time after the device's queued work is done (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def time_evaluation_image(model: torch.nn.Module, pair: ImagePair, protocol: dict[str, Any],
                          device: torch.device) -> tuple[float, float]:
    """``(model, rest)`` seconds of scoring ``pair`` as :func:`evaluate_pairs` does: the
    restoration, and the reading, quantizing and metrics."""
    tick = _clock(device)
    degraded, target = read_pair(pair)
    read = _clock(device) - tick
    tick = _clock(device)
    restored = restore(model.to(device).eval(), degraded, device, protocol.get("tiling"))
    forward = _clock(device) - tick
    tick = time.perf_counter()
    with one_intra_op_thread():
        restored = quantize_8bit(restored, protocol["quantization"])
        psnr(restored, target, protocol["metric_space"], protocol["crop_border"])
        ssim(restored, target, protocol["metric_space"], protocol["crop_border"],
             variant=protocol["ssim_variant"])
    return forward, read + time.perf_counter() - tick


def time_joint_step(make_trainer: Callable[[torch.nn.Module, torch.nn.Module, torch.Generator],
                                           Any],
                    teacher: torch.nn.Module, seed: int, device: torch.device
                    ) -> tuple[float, float]:
    """``(inputs, distill)`` seconds of the second of two joint steps of a throwaway trainer
    (``make_trainer(teacher_copy, student_copy, generator)``; the student a dense copy of
    the teacher). The global random state is restored afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        trainer = make_trainer(copy.deepcopy(teacher), copy.deepcopy(teacher),
                               torch.Generator().manual_seed(seed))
        trainer.inputs.new_round()
        parts = (0.0, 0.0)
        for _ in range(2):
            tick = _clock(device)
            drawn = trainer.inputs.step()
            middle = _clock(device)
            trainer.distiller.step(drawn.inputs, drawn.teacher_out)
            parts = (middle - tick, _clock(device) - middle)
    return parts


def done_steps(checkpoint: Path) -> int:
    """Joint steps a resumed run already did (its checkpoint's ``step``; 0 without one)."""
    if not checkpoint.is_file():
        return 0
    try:
        return int(torch.load(checkpoint, map_location="cpu", weights_only=True)["step"])
    except Exception:  # check_resumable_steps has reported unreadable checkpoints already
        return 0


class EtaProgress:
    """A :class:`ProgressSink` that adds ``eta`` (the whole run's time left: the joint
    loop's, from its measured pace, plus ``after`` seconds of evaluation) to the progress of
    ``phase``; other phases pass through unchanged."""

    def __init__(self, inner: ProgressSink, phase: str, after: float,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.inner, self.phase, self.after, self.clock = inner, phase, after, clock
        self.current: str | None = None
        self.total: int | None = None
        self.first: tuple[int, float] | None = None

    def start(self, phase: str, total: int | None, unit: str = "steps") -> None:
        self.current, self.total, self.first = phase, total, None
        self.inner.start(phase, total, unit)

    def update(self, completed: int, **fields: float | str) -> None:
        if self.current == self.phase and self.total:
            now = self.clock()
            if self.first is None:
                self.first = (completed, now)
            elif completed > self.first[0]:
                pace = (now - self.first[1]) / (completed - self.first[0])
                fields = {**fields, "eta": minutes(pace * (self.total - completed)
                                                   + self.after)}
        self.inner.update(completed, **fields)

    def finish(self) -> None:
        self.inner.finish()


def estimate_pipeline(resolved: ResolvedSettings, ctx: TrainingContext, teacher: torch.nn.Module,
                      pairs: list[ImagePair], protocol: dict[str, Any], steps: int,
                      calibrate: bool) -> RunEstimate:
    """The estimate of a pipeline run (see the module doc): ``steps`` joint steps still to
    run, ``calibrate``: whether the run dreams for the adaptive allocator's calibration.
    ``resolved`` and ``ctx`` are the run's settings and training context."""
    s = resolved.settings
    recovery = resolve_recovery(resolved)

    def make(teacher_copy: torch.nn.Module, student: torch.nn.Module,
             generator: torch.Generator) -> Any:
        return joint_trainer(teacher_copy, student, ctx.clean_source, ctx.schedule,
                             s.dream.round_steps, s.distill.student_lr, s.distill.lambda_kd,
                             generator, ctx.device, ctx.precision, inputs=s.distill.inputs,
                             student_plan=recovery.schedule, adversarial=recovery.adversarial)

    factor = 1.0 if s.prune.granularity == "unstructured" else s.prune.flops_target
    inputs, distill = time_joint_step(make, teacher, s.common.seed, ctx.device)
    model, rest = time_evaluation_image(teacher, pairs[0], protocol, ctx.device)
    count = len(pairs)
    dreaming = s.pipeline.calibration_steps * inputs \
        if calibrate and s.distill.inputs in DREAMING else 0.0
    return RunEstimate(steps=steps, seconds_per_step=inputs + distill * factor,
                       evaluation_before=count * (2 * rest + model * (1 + factor)),
                       evaluation_after=count * (rest + model * factor),
                       other_seconds=dreaming)
