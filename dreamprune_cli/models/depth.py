"""Depth-pruned networks: whole residual blocks replaced, rebuilt from a file without pickle.

A depth-pruned student is its model's architecture with some residual units removed and, for
networks that repeat stages with shared weights (PReNet's T recurrent stages), a smaller
repeat count in its constructor config. Two kinds of removal keep the network's shapes:

* ``block``: a module that computes ``x + f(x)`` (or ``relu(x + f(x))``) itself becomes the
  identity (GCANet's ``res1``..``res7``, FFA-Net's blocks and groups, MPRNet's CABs);
* ``branch``: a module ``f`` whose output its parent adds to its input (PReNet's
  ``x = relu(res_conv(x) + x)``) returns zeros, so the parent's sum is its input.

The file records the removed modules as JSON ``{name: kind}`` under
``dreamprune.depth.removed``; loading builds the architecture from the file's config (which
holds any lowered repeat count), applies :func:`remove_modules` and loads the state dict
strictly: the result computes exactly what the saved network computed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from dreamprune_cli.errors import UsageError

RemovalKind = Literal["block", "branch"]
REMOVED_KEY = "dreamprune.depth.removed"


class ZeroBranch(nn.Module):
    """A removed residual branch: returns zeros shaped like its (first) input.

    Shape: ``(N, C, H, W)`` -> ``(N, C, H, W)`` of zeros, same dtype and device. It has no
    parameters and costs no MACs (:mod:`dreamprune_cli.flops` counts no leaf of this type).
    """

    def forward(self, x: torch.Tensor, *_args: object, **_kwargs: object) -> torch.Tensor:
        return torch.zeros_like(x)


class RemovedBlock(nn.Module):
    """A removed residual block: returns its input unchanged; a block of several inputs (a
    DuRB's ``(x, res)``) returns them all as a tuple. No parameters, no MACs."""

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        return inputs[0] if len(inputs) == 1 else inputs


def replacement(kind: str) -> nn.Module:
    """The module that stands in for a removed block (identity) or branch (zeros).

    Raises:
        UsageError: an unknown kind.
    """
    if kind == "block":
        return RemovedBlock()
    if kind == "branch":
        return ZeroBranch()
    raise UsageError(f"{REMOVED_KEY}: unknown removal kind {kind!r}; expected block or branch")


def remove_modules(network: nn.Module, removed: Mapping[str, str]) -> nn.Module:
    """Replace each named submodule of ``network`` in place by its stand-in; returns it.

    Args:
        network: the dense architecture (or an already depth-pruned one).
        removed: dotted module name -> ``"block"`` (identity) or ``"branch"`` (zeros).

    Raises:
        UsageError: a name the network does not have, or an unknown kind.
    """
    modules = dict(network.named_modules())
    for name, kind in removed.items():
        if not name or name not in modules:
            raise UsageError(f"{REMOVED_KEY}: the network has no module {name!r} to remove")
        parent_name, _, child = name.rpartition(".")
        parent = modules[parent_name] if parent_name else network
        stand_in = replacement(kind)
        if isinstance(parent, (nn.Sequential, nn.ModuleList)) and child.isdigit():
            parent[int(child)] = stand_in
        else:
            setattr(parent, child, stand_in)
    return network


def removed_modules(network: nn.Module) -> dict[str, str]:
    """``{name: kind}`` of the stand-ins :func:`remove_modules` put into ``network``."""
    return {name: "block" if isinstance(module, RemovedBlock) else "branch"
            for name, module in network.named_modules()
            if isinstance(module, (RemovedBlock, ZeroBranch))}


def depth_metadata(network: nn.Module) -> dict[str, str]:
    """File metadata recording the removed modules of ``network``; ``{}`` when none."""
    removed = removed_modules(network)
    return {REMOVED_KEY: json.dumps(removed, sort_keys=True)} if removed else {}


def read_removed(metadata: Mapping[str, str], where: str) -> dict[str, str]:
    """The ``{name: kind}`` record of a file's metadata (``{}`` when absent).

    Raises:
        UsageError: a record that is not a JSON object of names to ``block``/``branch``.
    """
    text = metadata.get(REMOVED_KEY)
    if text is None:
        return {}
    try:
        removed = json.loads(text)
    except json.JSONDecodeError:
        removed = None
    if not isinstance(removed, dict) or not all(
            isinstance(k, str) and v in ("block", "branch") for k, v in removed.items()):
        raise UsageError(f"{where}: metadata {REMOVED_KEY} is not a JSON object of module "
                         "names to 'block' or 'branch'")
    return removed
