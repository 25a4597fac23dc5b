"""Rebuilding a channel-pruned network from its safetensors file, without pickle or Torch-Pruning.

A channel-pruned student is its model's architecture with thinner layers. Its file holds the
plain state dict and, in the metadata, the model name and constructor config (as every
dreamprune file) plus ``dreamprune.granularity = "channel"`` and ``dreamprune.channels``
(per changed layer, its input and output channels; informative). Loading builds the dense
model, resizes each layer to the file's tensor shapes (:func:`resize_to_state_dict`) and
loads the weights strictly: the result computes exactly what the saved network computed.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dreamprune_cli.errors import UsageError

GRANULARITY_KEY = "dreamprune.granularity"
CHANNELS_KEY = "dreamprune.channels"

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def _resize_attributes(name: str, module: nn.Module) -> None:
    """Make a module's size attributes agree with its (replaced) tensors."""
    if isinstance(module, nn.modules.conv._ConvNd):
        weight = module.weight
        depthwise = module.groups > 1 and module.groups == module.in_channels
        if module.transposed:  # (in, out / groups, k...)
            in_channels = weight.shape[0]
            groups = in_channels if depthwise else module.groups
            out_channels = weight.shape[1] * groups
        else:  # (out, in / groups, k...)
            out_channels = weight.shape[0]
            groups = out_channels if depthwise else module.groups
            in_channels = weight.shape[1] * groups
        module.in_channels, module.out_channels, module.groups = in_channels, out_channels, groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, _NORMS):
        tensor = module.weight if module.weight is not None else module.running_mean
        if tensor is not None:
            module.num_features = tensor.shape[0]
    elif isinstance(module, nn.GroupNorm):
        module.num_channels = module.weight.shape[0]
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = tuple(module.weight.shape)
    elif isinstance(module, nn.PReLU):
        module.num_parameters = module.weight.shape[0]
    else:
        raise UsageError(f"layer {name} ({type(module).__name__}): cannot be resized to a "
                         "channel-pruned shape (supported: convolutions, linear, batch/instance/"
                         "group/layer norms, PReLU)")


def resize_to_state_dict(network: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Give every parameter and buffer of ``network`` the shape it has in ``state``.

    Tensors whose shape differs are replaced by uninitialised ones of the state's shape (the
    caller loads ``state`` next) and the module's size attributes (``in_channels``,
    ``num_features``, ...) follow. Modules shared between places are first given one copy
    per place (:func:`unshare_modules`), as channel pruning does. Returns the names of the
    resized modules.

    Raises:
        UsageError: a tensor of another dimensionality, or a module type that cannot be
            resized.
    """
    unshare_modules(network)  # a channel-pruned student holds one copy per place
    resized = []
    for name, module in network.named_modules():
        changed = False
        for store in (module._parameters, module._buffers):
            for key, tensor in list(store.items()):
                full = f"{name}.{key}" if name else key
                if tensor is None or full not in state:
                    continue
                shape = tuple(state[full].shape)
                if shape == tuple(tensor.shape):
                    continue
                if len(shape) != tensor.dim():
                    raise UsageError(f"{full}: the file's shape {shape} is not a channel-pruned "
                                     f"{tuple(tensor.shape)}")
                fresh = torch.empty(shape, dtype=tensor.dtype, device=tensor.device)
                store[key] = nn.Parameter(fresh, tensor.requires_grad) \
                    if isinstance(tensor, nn.Parameter) else fresh
                changed = True
        if changed:
            _resize_attributes(name, module)
            resized.append(name)
    return resized


def unshare_modules(network: nn.Module) -> list[str]:
    """Give every module that ``network`` holds under several names its own copy.

    Some authors reuse one module instance in many places (MPRNet's single ``nn.PReLU``). Its
    state-dict keys are already one per place, so nothing changes for loading; but channel
    pruning must be able to thin each place alone, and a distilled student may learn
    different values per place. Returns the names that received a copy.
    """
    seen: set[int] = set()
    copied: list[str] = []

    def visit(module: nn.Module, prefix: str) -> None:
        for child_name, child in list(module.named_children()):
            name = f"{prefix}.{child_name}" if prefix else child_name
            if id(child) in seen:
                child = copy.deepcopy(child)
                setattr(module, child_name, child)
                copied.append(name)
            seen.add(id(child))
            visit(child, name)

    seen.add(id(network))
    visit(network, "")
    return copied


def _channels_of(module: nn.Module, weight_shape: Sequence[int]) -> list[int]:
    """``[in, out]`` of a convolution or linear layer whose weight has ``weight_shape``."""
    if isinstance(module, nn.Linear):
        return [int(weight_shape[1]), int(weight_shape[0])]
    depthwise = module.groups > 1 and module.groups == module.in_channels
    if module.transposed:
        groups = weight_shape[0] if depthwise else module.groups
        return [int(weight_shape[0]), int(weight_shape[1] * groups)]
    groups = weight_shape[0] if depthwise else module.groups
    return [int(weight_shape[1] * groups), int(weight_shape[0])]


def architecture_metadata(state: Mapping[str, torch.Tensor], factory: Callable[..., nn.Module],
                          config: Mapping[str, Any]) -> dict[str, str]:
    """Metadata that marks the state dict ``state`` as channel-pruned, or ``{}``.

    The dense architecture is built on the meta device (no memory) and its tensors compared
    shape by shape with ``state`` (a plain state dict: original key names). Channel-pruned:
    ``{"dreamprune.granularity": "channel", "dreamprune.channels": JSON {layer: [in, out]}}``
    for every convolution and linear layer whose shape changed.
    """
    with torch.device("meta"):
        dense = factory(**dict(config))
    dense_state = dense.state_dict()
    if all(tuple(v.shape) == tuple(dense_state[k].shape)
           for k, v in state.items() if k in dense_state):
        return {}
    changed = {}
    for name, module in dense.named_modules():
        key = f"{name}.weight"
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) and key in state \
                and tuple(state[key].shape) != tuple(module.weight.shape):
            changed[name] = _channels_of(module, state[key].shape)
    return {GRANULARITY_KEY: "channel", CHANNELS_KEY: json.dumps(changed, sort_keys=True)}
