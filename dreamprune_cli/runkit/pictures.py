"""The pipeline's pictures: ``grid.png`` (evaluation images, one row each, in the pairs'
natural order) and ``dreams.png`` (the student's latest complete inputs, labelled with their
step). Both are drawn by :func:`dreamprune_cli.report.save_grid` with bounded cells."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from dreamprune_cli.data.pairs import ImagePair, read_pair
from dreamprune_cli.engine.evaluate import EvaluationResult
from dreamprune_cli.engine.inputs import InputSource
from dreamprune_cli.report import save_grid

log = logging.getLogger(__name__)

Samples = list[tuple[str, torch.Tensor, torch.Tensor]]


def comparison_grid(path: Path, pairs: Sequence[ImagePair],
                    evaluations: Sequence[EvaluationResult], columns: Sequence[str],
                    crop: int | None = None) -> None:
    """One row per evaluation image the evaluations kept (the first ones of ``pairs``, which
    :func:`~dreamprune_cli.data.pairs.pair_folders` gives in natural name order), named on
    the left: input | each evaluation's restoration | target. ``crop``: the centred
    ``crop`` x ``crop`` window of each image instead of the whole image."""
    rows = min(len(evaluation.outputs) for evaluation in evaluations)
    images = []
    for index, pair in enumerate(pairs[:rows]):
        degraded, target = read_pair(pair)
        images.append([degraded] + [e.outputs[index] for e in evaluations] + [target])
    save_grid(path, images, overwrite=True, column_labels=list(columns),
              row_labels=[pair.name for pair in pairs[:rows]], crop=crop)


def latest_samples(source: InputSource, step: int, round_steps: int) -> tuple[Samples, str]:
    """What ``dreams.png`` shows after ``step`` joint steps, and its title.

    Dreams: the current round's when it is complete (``step`` a multiple of
    ``round_steps``), else the last finished round's (the dreamer keeps a copy), else (the
    first round, unfinished) the current ones, said to be in progress. Synthetic inputs: the
    last step's. ``mixed``: both, dreams first. ``adversarial``: the last step's plain synthetic
    inputs, then its moved ones.
    """
    samples: Samples = []
    words: list[str] = []
    dreams = source if source.name == "dreams" else getattr(source, "dreams", None)
    if dreams is not None:
        in_round = step % round_steps
        finished = dreams.finished_samples() if in_round else []
        if finished:
            samples += finished
            words.append(f"dreams of the round that ended at step {step - in_round} "
                         f"(the run: {step} steps)")
        else:
            samples += dreams.samples()
            words.append(f"dreams at step {step} (round in progress: {in_round} of "
                         f"{round_steps} steps)" if in_round else
                         f"dreams of the round that ended at step {step}")
    synthetic = source if source.name in ("synthetic", "adversarial") \
        else getattr(source, "synthetic", None)
    if synthetic is not None:
        drawn = synthetic.samples()
        samples += drawn
        if drawn:
            words.append(f"synthetic inputs of step {step}" + (
                ", then the same step's moved towards disagreement"
                if source.name == "adversarial" else ""))
    return samples, "; ".join(words)


def dream_grid(path: Path, source: InputSource, teacher: torch.nn.Module,
               student: torch.nn.Module, step: int, round_steps: int, device: torch.device,
               columns: Sequence[str]) -> None:
    """``dreams.png``: :func:`latest_samples`, what teacher and student make of them, and
    their clean targets (one row per image), titled with the step; none when the source has
    nothing to show (synthetic inputs after a session that ran no step)."""
    rows, labels = [], []
    shown, title = latest_samples(source, step, round_steps)
    for kind, inputs, clean in shown:
        inputs = inputs.to(device).float()
        with torch.inference_mode():
            restored_t = teacher(inputs).float().clamp(0, 1).cpu()
            restored_s = student(inputs).float().clamp(0, 1).cpu()
        inputs, clean = inputs.cpu(), clean.cpu()
        rows += [[inputs[i], restored_t[i], restored_s[i], clean[i]]
                 for i in range(inputs.shape[0])]
        labels += [f"{kind} {i + 1}" for i in range(inputs.shape[0])]
    if not rows:
        log.info("%s not written: no inputs drawn in this session", path.name)
        return
    save_grid(path, rows, overwrite=True, column_labels=list(columns), row_labels=labels,
              title=title)
