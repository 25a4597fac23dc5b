"""MAC accounting for pruning: kept MACs as an exact linear function of the weights kept.

The project's counter (:func:`dreamprune_cli.flops.count_costs`) charges a masked layer
``non-zero weights x positions + bias``, summed over its calls, where ``positions`` is the
number of output pixels of a convolution (input pixels of a transposed one, rows of a
linear layer). So for any masks::

    kept MACs = fixed + sum over pruned layers l of kept_l * positions_l

with ``fixed`` the MACs that no mask changes (layers kept dense, norms, activations, biases).
:func:`measure_budget` reads ``positions_l`` and ``fixed`` off two counts of the same
network (masks all ones, masks all zeros), so allocators can search masks with integer
arithmetic and the counter itself agrees with the result exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from dreamprune_cli.errors import RuntimeFailure, UsageError
from dreamprune_cli.flops import CostReport, count_costs
from dreamprune_cli.prune.unstructured.masks import get_masks, set_masks, unmasked_weight

TOLERANCE = 0.005
"""Largest relative difference between the reached and the requested MAC fraction."""


@dataclass(frozen=True)
class PrunableLayer:
    """One layer the allocators may thin out.

    Attributes:
        name: dotted module name.
        shape: weight shape.
        numel: weight elements.
        nonzero: weight elements that are not zero now (the most the layer can keep).
        positions: MACs one kept weight costs per forward pass at the counting size.
    """

    name: str
    shape: tuple[int, ...]
    numel: int
    nonzero: int
    positions: int


@dataclass(frozen=True)
class MacBudget:
    """Everything the allocators need to turn per-layer kept counts into MACs."""

    layers: tuple[PrunableLayer, ...]
    fixed_macs: int
    dense_macs: int
    input_size: tuple[int, int, int]

    def kept_macs(self, kept: Sequence[int]) -> int:
        """MACs of the network when layer ``i`` keeps ``kept[i]`` weights."""
        return self.fixed_macs + sum(int(k) * layer.positions
                                     for k, layer in zip(kept, self.layers, strict=True))

    def ratio(self, kept: Sequence[int]) -> float:
        """Kept MACs over the dense MACs."""
        return self.kept_macs(kept) / self.dense_macs

    def clip(self, kept: Sequence[float]) -> list[int]:
        """Round counts and clip them to ``[0, nonzero]`` per layer."""
        return [max(0, min(layer.nonzero, int(round(k))))
                for k, layer in zip(kept, self.layers, strict=True)]

    @property
    def smallest_ratio(self) -> float:
        """The fraction left when every pruned layer keeps no weight."""
        return self.fixed_macs / self.dense_macs

    @property
    def largest_ratio(self) -> float:
        """The fraction of the network as it is (every non-zero weight kept)."""
        return self.kept_macs([layer.nonzero for layer in self.layers]) / self.dense_macs

    def restricted(self, names: Sequence[str]) -> MacBudget:
        """The budget when only ``names`` are pruned; the other layers keep their non-zeros."""
        chosen = set(names)
        by_name = {layer.name: layer for layer in self.layers}
        fixed = self.fixed_macs + sum(layer.nonzero * layer.positions for layer in self.layers
                                      if layer.name not in chosen)
        return MacBudget(layers=tuple(by_name[name] for name in names), fixed_macs=fixed,
                         dense_macs=self.dense_macs, input_size=self.input_size)

    def target_macs(self, target: float) -> float:
        return target * self.dense_macs

    def check_target(self, target: float, model: str) -> None:
        """Refuse a target outside (0, 1] or outside what masks can reach.

        Raises:
            UsageError: naming the smallest (or largest) reachable fraction.
        """
        if not (0.0 < target <= 1.0) or math.isnan(target):
            raise UsageError(f"$flops_target {target!r}: expected a fraction of the MACs to "
                             "keep in (0, 1], e.g. 0.58")
        size = "x".join(map(str, self.input_size))
        if not self.layers and target < 1.0:
            raise UsageError(f"$flops_target {target:g} cannot be met for {model}: no layer "
                             "may be pruned (all excluded, or none exists); the smallest "
                             "reachable F is 1")
        smallest = self.smallest_ratio
        if target < smallest:
            reachable = math.ceil(smallest * 1e4) / 1e4
            raise UsageError(
                f"$flops_target {target:g} cannot be met for {model}: the layers that may be "
                f"pruned ({len(self.layers)}) carry only {1 - smallest:.2%} of the MACs at "
                f"{size}; the smallest reachable F is {reachable:.4f} (exclude fewer layers to "
                "go lower)")
        largest = self.largest_ratio
        if target > largest * (1 + TOLERANCE):
            raise UsageError(
                f"$flops_target {target:g} cannot be met for {model}: its weights already "
                f"keep only {largest:.4f} of the dense MACs at {size}; the largest reachable "
                f"F is {math.floor(largest * 1e4) / 1e4:.4f}")

    def check_reached(self, kept: Sequence[int], target: float, allocator: str) -> None:
        """Raise when the kept counts miss the target by more than :data:`TOLERANCE`."""
        reached = self.ratio(kept)
        if abs(reached - target) > TOLERANCE * target:
            raise UsageError(
                f"$flops_target {target:g}: the {allocator} allocator can only reach "
                f"{reached:.4f} here (the steps between its choices are too coarse for this "
                f"network); try another allocator or target")


def measure_budget(network: nn.Module, names: Sequence[str], input_size: tuple[int, int, int],
                   dense: CostReport | None = None,
                   unmasked: Sequence[str] = ()) -> MacBudget:
    """Measure positions and fixed MACs of the layers ``names`` (and ``unmasked``).

    Every layer in ``names`` must carry a mask (:func:`~.masks.attach_masks`); the masks are
    restored before returning. Layers in ``unmasked`` carry none and are measured by zeroing
    their weights for one count (restored after): they are in the returned budget too, so
    restrict it (:meth:`MacBudget.restricted`) to the layers that may be pruned.

    Args:
        dense: the counter's report of the same network with every mask all ones (or none
            attached), when the caller has it already.
    """
    saved = get_masks(network)
    modules = dict(network.named_modules())
    weights = {name: modules[name].weight.detach().clone() for name in unmasked}
    try:
        set_masks(network, {n: torch.ones_like(saved[n]) for n in names})
        full = dense if dense is not None else count_costs(network, input_size)
        set_masks(network, {n: torch.zeros_like(saved[n]) for n in names})
        with torch.no_grad():
            for name in unmasked:
                modules[name].weight.zero_()
        empty = count_costs(network, input_size)
    finally:
        set_masks(network, saved)
        with torch.no_grad():
            for name, weight in weights.items():
                modules[name].weight.copy_(weight)
    layers = []
    for name in [*names, *unmasked]:
        weight = unmasked_weight(modules[name]).detach()
        numel = weight.numel()
        varying = full.layer(name).macs_dense - empty.layer(name).macs
        if varying % numel:
            raise RuntimeFailure(f"layer {name}: MACs are not linear in its weights "
                                 f"({varying} over {numel} weights)")
        layers.append(PrunableLayer(name=name, shape=tuple(weight.shape), numel=numel,
                                    nonzero=int(torch.count_nonzero(weight)),
                                    positions=varying // numel))
    return MacBudget(layers=tuple(layers), fixed_macs=empty.macs, dense_macs=full.macs_dense,
                     input_size=tuple(input_size))  # type: ignore[arg-type]
