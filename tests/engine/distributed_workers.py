"""Process bodies and launch helpers for the torch.distributed tests (Gloo on the CPU).

Kept apart from the test modules so that ``torch.multiprocessing.spawn`` imports only this
small module in each child.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli.data.clean import make_clean_source
from dreamprune_cli.engine.runtime import resolve_precision
from dreamprune_cli.engine.distill import Distiller
from dreamprune_cli.engine.distributed import (RankSync, free_port, local_environment,
                                               rank_seed, spawn_local)
from dreamprune_cli.engine.dream import Dreamer, DreamSchedule
from dreamprune_cli.engine.evaluate import evaluate_pairs
from dreamprune_cli.engine.joint import JointTrainer
from dreamprune_cli.models import build_model, get_model_info
from dreamprune_cli.models.adapter import RestorationAdapter
from dreamprune_cli.prune.unstructured.masks import (attach_masks, get_masks, magnitude_masks,
                                                     plain_state_dict, prunable_modules, set_masks)

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[2]
WORLD = 2


def spawn(body: Callable[..., None], *args: Any, world: int = WORLD) -> None:
    """Run ``body(sync, *args)`` in ``world`` processes joined in a Gloo group."""
    spawn_local(body, world, *args)


def launch_cli(args: list[str], world: int = WORLD, cwd: Path | None = None
               ) -> list[subprocess.Popen[str]]:
    """Start ``python -m dreamprune_cli ARGS`` as ``world`` processes, as torchrun would."""
    port = free_port()
    processes = []
    for rank in range(world):
        env = {key: value for key, value in os.environ.items()
               if not key.startswith("DREAMPRUNE_") or key == "DREAMPRUNE_CACHE"}
        env.update(local_environment(rank, world, port))
        env["PYTHONPATH"] = str(REPO)
        processes.append(subprocess.Popen([sys.executable, "-m", "dreamprune_cli", *args],
                                          cwd=cwd or REPO, env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    return processes


def finish(processes: list[subprocess.Popen[str]], timeout: float = 300
           ) -> list[tuple[int, str, str]]:
    """Wait for every process: ``(exit code, stdout, stderr)`` per rank."""
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
        results.append((process.returncode, out, err))
    return results


# ----------------------------------------------------------------------------- models
def teacher_student(seed: int = 0) -> tuple[RestorationAdapter, RestorationAdapter]:
    """A tiny FFA teacher and a copy with half of each layer's weights masked."""
    torch.manual_seed(seed)
    info = get_model_info("ffa")
    network = build_model("ffa", "tiny", blocks=1)
    student_net = copy.deepcopy(network)
    names = [n for n, _ in prunable_modules(student_net)]
    attach_masks(student_net, names)
    modules = dict(student_net.named_modules())
    set_masks(student_net, magnitude_masks(
        student_net, {n: modules[n].weight.numel() // 2 for n in names}))
    return RestorationAdapter(network, info), RestorationAdapter(student_net, info)


SCHEDULE = DreamSchedule(batch_size=4, size=16)
STUDENT_LR = 1e-3


class RecordingDistiller(Distiller):
    """A distiller that keeps the batches it was given (to replay them in one process)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def step(self, inputs: torch.Tensor, teacher_out: torch.Tensor) -> float:
        self.seen.append((inputs.detach().clone(), teacher_out.detach().clone()))
        return super().step(inputs, teacher_out)


def joint_body(sync: RankSync, out: Path, steps: int) -> None:
    """A few joint steps over the ranks; saves the batches seen and the final student."""
    teacher, student = teacher_student()
    generator = torch.Generator().manual_seed(rank_seed(0, sync))
    precision = resolve_precision(CPU)
    dreamer = Dreamer(teacher, make_clean_source(None), SCHEDULE, generator, CPU, precision,
                      sync)
    distiller = RecordingDistiller(student, STUDENT_LR, 1.0, CPU, precision, sync)
    trainer = JointTrainer(dreamer, distiller, round_steps=2, generator=generator, sync=sync)
    result = trainer.run(steps)
    torch.save({"seen": distiller.seen, "student": plain_state_dict(student.network),
                "masks": get_masks(student.network), "history": result.history},
               out / f"rank{sync.rank}.pt")


def ema_body(sync: RankSync, out: Path, steps: int) -> None:
    """Joint steps over the ranks with a cosine schedule and a weight average (of the
    unwrapped student); saves the raw student after every step and the adopted average."""
    from dreamprune_cli.engine.distill import StudentSchedule

    teacher, student = teacher_student()
    generator = torch.Generator().manual_seed(rank_seed(0, sync))
    precision = resolve_precision(CPU)
    dreamer = Dreamer(teacher, make_clean_source(None), SCHEDULE, generator, CPU, precision,
                      sync)
    plan = StudentSchedule("cosine", warmup_steps=1, ema_decay=0.6, total_steps=steps)
    distiller = Distiller(student, STUDENT_LR, 1.0, CPU, precision, sync, schedule=plan)
    trainer = JointTrainer(dreamer, distiller, round_steps=2, generator=generator, sync=sync)
    raw = []
    for step in range(1, steps + 1):
        trainer.run(step)
        raw.append(plain_state_dict(student.network))
    distiller.adopt_average()
    torch.save({"raw": raw, "adopted": plain_state_dict(student.network),
                "masks": get_masks(student.network), "lr": distiller.lr},
               out / f"rank{sync.rank}.pt")


def dream_body(sync: RankSync, out: Path, steps: int) -> None:
    """A few dreaming steps of one round; saves the first and the last dreams."""
    teacher, _ = teacher_student()
    generator = torch.Generator().manual_seed(rank_seed(0, sync))
    dreamer = Dreamer(teacher, make_clean_source(None), SCHEDULE, generator, CPU,
                      resolve_precision(CPU), sync)
    dreamer.new_round()
    start = {"dreams": dreamer.dreams.detach().clone(), "clean": dreamer.clean.clone()}
    losses = [dreamer.step() for _ in range(steps)]
    torch.save({**start, "final": dreamer.dreams.detach().clone(),
                "orth": [step.orth_loss for step in losses]}, out / f"rank{sync.rank}.pt")


def evaluate_body(sync: RankSync, out: Path, pairs: list[Any]) -> None:
    """Sharded evaluation of the tiny teacher; saves the merged result."""
    teacher, _ = teacher_student()
    result = evaluate_pairs(teacher, pairs, "rgb", 0, CPU, keep_outputs=2, sync=sync)
    torch.save({"result": result}, out / f"rank{sync.rank}.pt")


def dream_resume_body(sync: RankSync, out: Path) -> None:
    """``dream_images`` straight, then resumed from its state after the first batch."""
    from dreamprune_cli.engine.dream import dream_images

    teacher, _ = teacher_student()
    states: list[dict[str, Any]] = []

    def run(resume_state: dict[str, Any] | None) -> torch.Tensor:
        generator = torch.Generator().manual_seed(rank_seed(0, sync))
        return dream_images(teacher, make_clean_source(None), 8, 3, SCHEDULE, generator, CPU,
                            resolve_precision(CPU), resume_state=resume_state,
                            on_batch_done=states.append, save_every=2, sync=sync).dreams

    straight = run(None)
    after_first = next(s for s in states if s["ranks"][0]["current"] is None)
    resumed = run(after_first)
    torch.save({"straight": straight, "resumed": resumed, "state": after_first},
               out / f"rank{sync.rank}.pt")


def inputs_body(sync: RankSync, out: Path, inputs: str) -> None:
    """Joint steps on ``inputs`` (synthetic or mixed) over the ranks: 4 straight, and 2 then a
    checkpoint then a resume to 4; saves the batches seen and both students."""
    from dreamprune_cli.engine.inputs import make_input_source

    def trainer(seed: int) -> tuple[JointTrainer, RecordingDistiller]:
        teacher, student = teacher_student()
        generator = torch.Generator().manual_seed(rank_seed(seed, sync))
        precision = resolve_precision(CPU)
        source = make_input_source(inputs, teacher, make_clean_source(None), SCHEDULE,
                                   generator, CPU, precision, sync)
        distiller = RecordingDistiller(student, STUDENT_LR, 1.0, CPU, precision, sync)
        return JointTrainer(source, distiller, round_steps=3, generator=generator,
                            sync=sync), distiller

    straight, seen = trainer(0)
    straight.run(4)
    first, _ = trainer(0)
    first.run(2, checkpoint=out / "checkpoint.pt", checkpoint_every=2)
    sync.barrier()  # rank 0 has written the checkpoint
    resumed, _ = trainer(5)
    resumed.load(out / "checkpoint.pt")
    resumed.run(4)
    torch.save({"seen": seen.seen, "history": straight.history,
                "straight": plain_state_dict(straight.distiller.student.network),
                "resumed": plain_state_dict(resumed.distiller.student.network),
                "resumed_history": resumed.history}, out / f"rank{sync.rank}.pt")
