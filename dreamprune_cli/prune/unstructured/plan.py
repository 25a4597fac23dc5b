"""Unstructured pruning of a teacher to a MAC target: allocate, mask, verify.

``prune_model`` never modifies the teacher: it masks a copy. The kept MACs are verified with
the project's counter (:func:`dreamprune_cli.flops.count_costs`) on the masked student.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dreamprune_cli.errors import RuntimeFailure, UsageError
from dreamprune_cli.flops import CostReport, count_costs
from dreamprune_cli.data.calibration import synthetic_calibration
from dreamprune_cli.models.adapter import RestorationAdapter, network_input_size
from dreamprune_cli.models.loading import LoadedModel
from dreamprune_cli.progress import ProgressSink
from dreamprune_cli.prune import ALLOCATORS
from dreamprune_cli.prune.result import LayerReport, PruneResult
from dreamprune_cli.prune.spec import DEFAULT_MIN_KEEP
from dreamprune_cli.prune.unstructured.allocators import MAGNITUDE_ALLOCATORS
from dreamprune_cli.prune.unstructured.budget import TOLERANCE, MacBudget, measure_budget
from dreamprune_cli.prune.unstructured.drift import (DEFAULT_KEEP_LEVELS, DriftCurves,
                                                     allocate_adaptive, measure_drift)
from dreamprune_cli.prune.unstructured.masks import (attach_masks, default_exclude, get_masks,
                                                     magnitude_masks, set_masks, split_layers,
                                                     unmasked_weight)

log = logging.getLogger(__name__)


@dataclass
class PruningPlan:
    """A masked copy of the teacher and its MAC accounting, before any allocation.

    One plan serves any number of targets and allocators (:func:`apply_allocation`).
    """

    loaded: LoadedModel
    network: torch.nn.Module  # the teacher's copy, all-ones masks on the pruned layers
    budget: MacBudget
    before: CostReport
    names: list[str]  # pruned layers, budget order
    dense_names: list[str]  # prunable-type layers excluded from pruning
    exclude: list[str]  # the exclusion globs applied (defaults, then the user's)
    flops_size: int
    positions: dict[str, int]  # MACs per non-zero weight, every conv/linear layer

    @property
    def input_size(self) -> tuple[int, int, int]:
        """What the bare network receives for a 3 x flops_size x flops_size RGB image."""
        return network_input_size(self.loaded.info, self.flops_size)


def _check_allocator(allocator: str) -> None:
    if allocator not in ALLOCATORS:
        raise UsageError(f"$allocator {allocator!r}: expected one of {', '.join(ALLOCATORS)}")


def plan_pruning(loaded: LoadedModel, flops_size: int = 256, exclude: Sequence[str] = (),
                 use_default_exclude: bool = True) -> PruningPlan:
    """Copy the teacher, choose the layers to prune, attach masks, measure the MAC budget.

    Raises:
        UsageError: a size the model cannot take, an ``--exclude`` glob matching nothing, a
            model without MACs.
    """
    multiple = loaded.info.size_multiple
    if flops_size < 1 or flops_size % multiple:
        raise UsageError(f"$flops_size {flops_size}: expected a multiple of {multiple} for "
                         f"{loaded.name}")
    input_size = network_input_size(loaded.info, flops_size)
    network = copy.deepcopy(loaded.network).eval()
    before = count_costs(network, input_size)
    if before.macs_dense == 0:
        raise UsageError(f"model {loaded.name} has no MACs to prune")
    called = {layer.name for layer in before.layers if layer.prunable and layer.calls > 0}
    defaults = default_exclude(network, loaded.info.prune_exclude, input_size) \
        if use_default_exclude else []
    names, dense_names = split_layers(network, defaults, exclude, called)
    attach_masks(network, names)
    measured = measure_budget(network, names, input_size, dense=before, unmasked=dense_names)
    budget = measured.restricted(names)
    log.info("%s: %d layers pruned, %d kept dense (%s); dense %.4g GMACs at %s",
             loaded.name, len(names), len(dense_names), ", ".join(dense_names) or "none",
             budget.dense_macs / 1e9, "x".join(map(str, input_size)))
    return PruningPlan(loaded=loaded, network=network, budget=budget, before=before,
                       names=names, dense_names=dense_names, exclude=[*defaults, *exclude],
                       flops_size=flops_size,
                       positions={layer.name: layer.positions for layer in measured.layers})


def measure_plan_drift(plan: PruningPlan, calibration: torch.Tensor,
                       device: torch.device | None = None,
                       keep_levels: Sequence[float] = DEFAULT_KEEP_LEVELS, max_batch: int = 64,
                       progress: ProgressSink | None = None) -> DriftCurves:
    """Drift curves of the plan's pruned layers on ``calibration`` (for ``adaptive``)."""
    if device is not None:
        plan.network.to(device)
    modules = dict(plan.network.named_modules())
    return measure_drift(RestorationAdapter(plan.network, plan.loaded.info),
                         {name: modules[name] for name in plan.names}, plan.budget,
                         calibration, keep_levels, max_batch, progress)


def apply_allocation(plan: PruningPlan, flops_target: float, allocator: str,
                     drift: DriftCurves | None = None,
                     min_keep: float = DEFAULT_MIN_KEEP) -> PruneResult:
    """Allocate, mask and verify; the result holds its own masked copy of the network.

    ``min_keep`` (adaptive only): the smallest fraction of any layer kept when the target
    allows it.

    Raises:
        UsageError: unknown allocator, or a target outside (0, 1] or out of reach.
    """
    _check_allocator(allocator)
    plan.budget.check_target(flops_target, plan.loaded.name)
    return _allocate(plan, flops_target, allocator, drift, min_keep)


def _allocate(plan: PruningPlan, flops_target: float, allocator: str,
              drift: DriftCurves | None, min_keep: float) -> PruneResult:
    """:func:`apply_allocation` for a checked allocator and reachable target."""
    start = time.perf_counter()
    loaded, budget, network = plan.loaded, plan.budget, plan.network
    modules = dict(network.named_modules())
    if allocator == "adaptive":
        if drift is None:
            raise ValueError("the adaptive allocator needs drift curves (measure_plan_drift)")
        allocation = allocate_adaptive(drift, budget, flops_target, min_keep)
    else:
        weights = [unmasked_weight(modules[name]).detach() for name in plan.names]
        allocation = MAGNITUDE_ALLOCATORS[allocator](weights, budget, flops_target)
    budget.check_reached(allocation.kept, flops_target, allocator)

    set_masks(network, magnitude_masks(network, dict(zip(plan.names, allocation.kept))))
    after = count_costs(network, plan.input_size)
    if after.macs != budget.kept_macs(allocation.kept):
        raise RuntimeFailure(f"internal: the counter sees {after.macs} MACs, the budget "
                             f"{budget.kept_macs(allocation.kept)}")
    ratio = after.macs / after.macs_dense
    if abs(ratio - flops_target) > TOLERANCE * flops_target:
        raise RuntimeFailure(f"internal: reached {ratio:.4f} of the MACs, asked {flops_target}")
    student_network = copy.deepcopy(network)
    set_masks(network, {name: torch.ones_like(mask)
                        for name, mask in get_masks(network).items()})

    student_modules = dict(student_network.named_modules())
    layers = []
    for name in [n for n in student_modules if n in plan.names or n in plan.dense_names]:
        cost = after.layer(name)
        weight = student_modules[name].weight.detach()
        layers.append(LayerReport(
            name=name, kind=cost.kind.removeprefix("Parametrized"), shape=list(weight.shape),
            pruned=name in plan.names, params=weight.numel(),
            params_kept=int(torch.count_nonzero(weight)), macs_dense=cost.macs_dense,
            macs_kept=cost.macs, positions=plan.positions[name]))
    student = LoadedModel(name=loaded.name, info=loaded.info, network=student_network,
                          config=dict(loaded.config), weights=loaded.weights)
    return PruneResult(
        student=student, allocator=allocator, flops_target=flops_target,
        flops_size=plan.flops_size, scalar_name=allocation.scalar_name,
        scalar=float(allocation.scalar), macs_dense=after.macs_dense,
        macs_before=plan.before.macs, macs_after=after.macs, params_dense=plan.before.params,
        params_before=plan.before.params_nonzero, params_after=after.params_nonzero,
        layers=layers, exclude=list(plan.exclude), seconds=time.perf_counter() - start,
        drift=drift if allocator == "adaptive" else None, details=allocation.details)


def prune_model(loaded: LoadedModel, flops_target: float, allocator: str,
                flops_size: int = 256, exclude: Sequence[str] = (),
                calibration: torch.Tensor | None = None, use_default_exclude: bool = True,
                device: torch.device | None = None, calibration_count: int = 4,
                calibration_size: int = 64, seed: int = 0,
                keep_levels: Sequence[float] = DEFAULT_KEEP_LEVELS, max_batch: int = 64,
                drift: DriftCurves | None = None, min_keep: float = DEFAULT_MIN_KEEP,
                progress: ProgressSink | None = None) -> PruneResult:
    """Prune a copy of ``loaded.network`` so that it keeps ``flops_target`` of its MACs.

    Args:
        loaded: the teacher (left untouched).
        flops_target: fraction F in (0, 1] of the dense MACs at ``3 x flops_size^2`` to keep.
        allocator: ``uniform``, ``global``, ``erk``, ``lamp`` or ``adaptive``.
        flops_size: square side at which MACs are counted (a multiple of the model's
            ``size_multiple``).
        exclude: extra module-name globs kept dense (``--exclude``).
        calibration: ``(B, 3, H, W)`` degraded images in [0, 1] for ``adaptive``; ``None``
            uses ``calibration_count`` synthetic images of side ``calibration_size`` of the
            model's task (seeded by ``seed``).
        use_default_exclude: keep the registry's first/last convolutions dense.
        device: where the drift is measured (``adaptive`` only); the student ends there.
        keep_levels: the adaptive grid of keep fractions (starting at 1.0).
        max_batch: images per forward pass while measuring drift.
        drift: curves from an earlier result (``result.drift``) of the same model, size and
            exclusions: they do not depend on the target, so the measurement is skipped.
        min_keep: ``adaptive`` keeps at least this fraction of every pruned layer unless
            the target needs less (emptying a layer is rarely what its drift suggests).
        progress: receives the drift measurement's steps.

    Raises:
        UsageError: unknown allocator, target outside (0, 1] or unreachable, bad size or
            exclusion glob.
    """
    start = time.perf_counter()
    _check_allocator(allocator)
    plan = plan_pruning(loaded, flops_size, exclude, use_default_exclude)
    plan.budget.check_target(flops_target, loaded.name)  # before minutes of drift
    if allocator != "adaptive":
        drift = None
    elif drift is not None:
        if drift.names != plan.names:
            raise UsageError("the drift curves given were measured on other layers "
                             "(another model, size or $exclude)")
    else:
        if calibration is None:
            log.info("no calibration images: using %d synthetic %s images of %d px",
                     calibration_count, loaded.info.task, calibration_size)
            calibration = synthetic_calibration(loaded.info.task, calibration_count,
                                                calibration_size, seed)
        drift = measure_plan_drift(plan, calibration, device, keep_levels, max_batch,
                                   progress)
    result = _allocate(plan, flops_target, allocator, drift, min_keep)
    result.seconds = time.perf_counter() - start
    return result
