"""What a pruning run does, typed and decided: :class:`PruneSpec`.

The settings (:mod:`dreamprune_cli.settings`) know where each value came from (default,
preset, environment, flag, a resumed run's record); the planners do not, and need not. The
one function that reads the settings and their sources for pruning,
:func:`dreamprune_cli.settings.resolve_prune_spec`, makes every decision that depends on them
(an allocator without a channel form replaced or refused, a channel multiple or latency
target that contradicts the granularity refused) and returns a :class:`PruneSpec` whose values
are the ones the run uses; :func:`dreamprune_cli.prune.dispatch.prune_to_spec` hands it to the
granularity's planner.

This module imports nothing of PyTorch (the settings import it).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dreamprune_cli.prune import GRANULARITIES

DEFAULT_CHANNEL_ALLOCATOR = "lamp"
"""Used when the allocator setting has no channel form (``erk``) and was not asked for:
before any distillation, LAMP kept the bundled HINet at 24.37 dB at F = 0.58 (uniform 16.57,
global 18.80; teacher 24.89) and FFA at 14.73 dB (uniform 14.84, global 14.62;
docs/RESULTS.md)."""

DEFAULT_MIN_KEEP = 0.1
"""Smallest fraction of a layer (unstructured) or channel group the adaptive allocator keeps
when the target allows it.

Emptying a layer is a structural change (an attention branch turns constant) that the
additive drift model underestimates: on the bundled FFA teacher at F = 0.40, allowing it
cost 1.7 dB before distillation (dream calibration: 15.42 vs 17.10 dB, docs/RESULTS.md).
"""

DEFAULT_RECONSTRUCT_RIDGE = 0.1
"""Default ridge strength of ``--reconstruct``'s solves, relative to the mean diagonal of each
layer's ``X^T X`` (:mod:`dreamprune_cli.prune.reconstruct`), pulling each layer towards its
pruned weights. Chosen on the synthetic validation (docs/RESULTS.md, "Recovery levers"), 32
images of 128 px, before any training, among 0.001 (the earlier default, towards zero for
structured students), 0.01 and 0.1: 0.1 was best on PReNet6's channel student (29.23 dB of
fidelity, against 27.35 and 26.70) and its unstructured one at F = 0.40 (36.35, against 35.55
and 34.82), 0.01 on GCANet's two (unstructured 33.79 against 33.78 and 33.37; channel 21.00
against 20.85 and 20.82); 0.1 had the higher mean."""

DEFAULT_RECONSTRUCT_COUNT = 32
DEFAULT_RECONSTRUCT_SIZE = 128
"""Default calibration of ``--reconstruct``: 32 synthetic degraded images of 128 px. Chosen on
the synthetic validation of the authors' networks (docs/RESULTS.md, "Recovery levers"): before
any training it beat the earlier 8 images of 256 px (the same pixels) on every student
measured: GCANet unstructured 33.37 against 32.34 dB of fidelity to the teacher, GCANet channel
20.82 against 19.40, PReNet6 channel 26.70 against 24.45."""


@dataclass(frozen=True)
class PruneSpec:
    """How to prune, every value already the one used (no provenance left to read).

    Attributes:
        granularity: one of :data:`~dreamprune_cli.prune.GRANULARITIES`.
        allocator: in its granularity's form: an unstructured allocator; at ``channel`` and
            ``depth+channel`` one with a channel form
            (:data:`~dreamprune_cli.prune.CHANNEL_ALLOCATORS`); ``drift`` at ``depth``.
        flops_target: fraction of the dense MACs to keep (the first plan's, with a latency
            target).
        latency_target: the student's time over the teacher's, or ``None``; only with a
            structured granularity.
        flops_size: square side at which MACs are counted.
        channel_multiple: kept channels per group rounded to a multiple of it (1: any count;
            always 1 where no channels are removed).
        exclude: module-name globs kept dense (unstructured) or whose output channels stay
            (channel); see :func:`matches`.
        default_exclude: unstructured: keep the model's first and last convolutions dense.
        min_keep: least fraction of every layer or group kept unless the target needs less.
        calibration_dir: the folder of degraded images this pruning measures drift on, when
            it does and one was given; ``None``: synthetic images.
        calibration_count: how many calibration images.
        calibration_size: their side (``depth_calibration_size`` at depth granularities).
        seed: seeds the synthetic calibration images.
        calibration_ignored: a calibration folder the user gave that this pruning does not
            read (``prune`` warns).
        reconstruct: after the cut, refit the student layer by layer to the teacher
            (:mod:`dreamprune_cli.prune.reconstruct`; masked students keep their masks).
        reconstruct_count: images the reconstruction fits on.
        reconstruct_size: their side (px).
        reconstruct_ridge: the ridge strength of its solves (relative to the mean diagonal
            of each layer's ``X^T X``).
        reconstruct_dir: the folder they are cut from (``calibration``); ``None``: synthetic
            degraded images of the model's task.
    """

    granularity: str = "unstructured"
    allocator: str = "adaptive"
    flops_target: float = 0.58
    latency_target: float | None = None
    flops_size: int = 256
    channel_multiple: int = 1
    exclude: tuple[str, ...] = ()
    default_exclude: bool = True
    min_keep: float = DEFAULT_MIN_KEEP
    calibration_dir: Path | None = None
    calibration_count: int = 4
    calibration_size: int = 64
    seed: int = 0
    calibration_ignored: bool = False
    reconstruct: bool = False
    reconstruct_count: int = DEFAULT_RECONSTRUCT_COUNT
    reconstruct_size: int = DEFAULT_RECONSTRUCT_SIZE
    reconstruct_ridge: float = DEFAULT_RECONSTRUCT_RIDGE
    reconstruct_dir: Path | None = None

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity {self.granularity!r}: expected one of "
                             f"{', '.join(GRANULARITIES)}")

    @property
    def structured(self) -> bool:
        """Whether the student is a smaller network (not a masked copy of the teacher)."""
        return self.granularity != "unstructured"

    @property
    def removes_channels(self) -> bool:
        """Whether channels are removed (``channel``, ``depth+channel``)."""
        return self.granularity in ("channel", "depth+channel")

    @property
    def removes_depth(self) -> bool:
        """Whether blocks and stages are removed (``depth``, ``depth+channel``)."""
        return self.granularity in ("depth", "depth+channel")


def matches(name: str, patterns: Iterable[str]) -> bool:
    """Whether ``name`` or one of its dotted prefixes matches one of the globs (the spec's
    ``exclude``: ``g1`` excludes every layer under ``g1``)."""
    parts = name.split(".")
    prefixes = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(fnmatch.fnmatchcase(prefix, pattern) for pattern in patterns for prefix in prefixes)
