"""Fixed binary weight masks on Conv2d, ConvTranspose2d and Linear layers.

A mask is attached with ``torch.nn.utils.parametrize``: the layer's weight becomes
``original * mask``, so ``module.weight`` is the masked weight everywhere (forward passes, the
MAC counter, ``state_dict`` export), and the gradient reaching ``original`` is multiplied by
the mask, so training never revives a pruned weight. The mask is a bool buffer of the
parametrization, not a parameter: no optimiser touches it.

Which layers may be pruned: every Conv2d/ConvTranspose2d/Linear that runs in a forward pass,
except those matching an exclusion pattern. A pattern is an ``fnmatch`` glob matched against
the module's dotted name or any dotted prefix of it (``g1`` excludes every layer under ``g1``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize

from dreamprune_cli.errors import UsageError
from dreamprune_cli.flops import execution_order, prunable_modules
from dreamprune_cli.prune.spec import matches

log = logging.getLogger(__name__)

class WeightMask(nn.Module):
    """Parametrization ``weight -> weight * mask`` with a fixed bool mask buffer."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def default_exclude(network: nn.Module, registry_exclude: Sequence[str],
                    input_size: tuple[int, int, int]) -> list[str]:
    """The layers kept dense unless the user says otherwise.

    The registry's ``prune_exclude`` (the convolutions that read the input image or write the
    restored one) when it names any; otherwise (custom models) the first and the last prunable
    layer that a forward pass calls.
    """
    if registry_exclude:
        return list(registry_exclude)
    order = execution_order(network, input_size)
    return list(dict.fromkeys([order[0], order[-1]])) if order else []


def split_layers(network: nn.Module, exclude: Sequence[str], user_exclude: Sequence[str],
                 called: set[str] | None = None) -> tuple[list[str], list[str]]:
    """Split the prunable-type layers into (pruned, kept dense).

    Args:
        network: the bare network.
        exclude: default exclusion globs (registry or :func:`default_exclude`).
        user_exclude: the user's ``--exclude`` globs; each must match at least one layer.
        called: names of the layers a forward pass calls; layers outside it cost nothing
            and are left alone (neither pruned nor listed as excluded).

    Raises:
        UsageError: an ``--exclude`` glob matches no Conv2d/ConvTranspose2d/Linear layer.
    """
    layers = [name for name, _ in prunable_modules(network)
              if called is None or name in called]
    for pattern in user_exclude:
        if not any(matches(name, [pattern]) for name in layers):
            examples = ", ".join(layers[:4])
            raise UsageError(f"$exclude {pattern!r}: matches no Conv2d/ConvTranspose2d/Linear "
                             f"layer (their names look like: {examples}, ...)")
    for pattern in exclude:
        if not any(matches(name, [pattern]) for name in layers):
            log.debug("default exclusion %r matches no layer of this variant", pattern)
    patterns = [*exclude, *user_exclude]
    pruned = [name for name in layers if not matches(name, patterns)]
    kept = [name for name in layers if matches(name, patterns)]
    return pruned, kept


def mask_holder(module: nn.Module) -> WeightMask | None:
    """The :class:`WeightMask` attached to ``module.weight``, if any."""
    if not parametrize.is_parametrized(module, "weight"):
        return None
    for item in module.parametrizations["weight"]:
        if isinstance(item, WeightMask):
            return item
    return None


def attach_masks(network: nn.Module, names: Iterable[str]) -> None:
    """Attach an all-ones :class:`WeightMask` to each named layer (existing masks are kept)."""
    modules = dict(network.named_modules())
    for name in names:
        module = modules[name]
        if mask_holder(module) is None:
            parametrize.register_parametrization(
                module, "weight", WeightMask(torch.ones_like(module.weight, dtype=torch.bool)))


def set_masks(network: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Replace the masks of the named layers (which must carry a :class:`WeightMask`)."""
    modules = dict(network.named_modules())
    for name, mask in masks.items():
        holder = mask_holder(modules[name])
        if holder is None:
            raise ValueError(f"layer {name!r} has no mask attached")
        if tuple(mask.shape) != tuple(holder.mask.shape):
            raise ValueError(f"mask for {name!r} has shape {tuple(mask.shape)}, "
                             f"expected {tuple(holder.mask.shape)}")
        holder.mask.copy_(mask.to(device=holder.mask.device, dtype=torch.bool))


def get_masks(network: nn.Module) -> dict[str, torch.Tensor]:
    """Layer name -> bool mask (on the CPU) of every masked layer."""
    masks = {}
    for name, module in network.named_modules():
        holder = mask_holder(module)
        if holder is not None:
            masks[name] = holder.mask.detach().cpu().clone()
    return masks


def unmasked_weight(module: nn.Module) -> torch.Tensor:
    """The weight under the mask (the layer's own weight when none is attached)."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations["weight"].original
    return module.weight


def magnitude_mask(weight: torch.Tensor, keep: int) -> torch.Tensor:
    """Bool mask keeping the ``keep`` largest ``|weight|`` entries (ties: lowest index first)."""
    flat = weight.detach().abs().flatten()
    keep = max(0, min(int(keep), flat.numel()))
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if keep:
        order = torch.sort(flat, descending=True, stable=True).indices
        mask[order[:keep]] = True
    return mask.view_as(weight)


def magnitude_masks(network: nn.Module, kept: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """Layer name -> mask keeping that layer's ``kept[name]`` largest-magnitude weights."""
    modules = dict(network.named_modules())
    return {name: magnitude_mask(unmasked_weight(modules[name]), count)
            for name, count in kept.items()}


def plain_state_dict(network: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict of the unmasked architecture, pruned weights set to exactly zero.

    Key names are the original ones (``conv.weight``, not ``conv.parametrizations...``), so
    the result loads strictly into a freshly built, unpruned network.
    """
    state = network.state_dict()
    for name, module in network.named_modules(remove_duplicate=False):
        if not parametrize.is_parametrized(module, "weight"):
            continue
        prefix = f"{name}.parametrizations.weight." if name else "parametrizations.weight."
        for key in [k for k in state if k.startswith(prefix)]:
            del state[key]
        state[f"{name}.weight" if name else "weight"] = module.weight.detach().clone()
    return state
