"""Multiply-accumulate (MAC, what the paper calls FLOPs) and parameter counting, mask-aware.

Conventions (per forward pass of one input of the given size):

* Convolution: ``nonzero_weight_elements * H_out * W_out`` (this accounts for groups);
  transposed convolution: ``nonzero_weight_elements * H_in * W_in`` (each input pixel meets
  every weight once). Linear: ``nonzero_weight_elements`` per output position.
  A weight element that is zero, or masked by a pruning parametrization, costs nothing.
* A bias adds one MAC per output element (ptflops does the same).
* Normalisation layers cost one MAC per output element (two when affine); activations
  (ReLU, LeakyReLU, PReLU, ELU, GELU, Sigmoid, Tanh, ...) one per output element; pooling one
  per input element; upsampling one per output element.
* A custom leaf module may state its own cost with a method ``count_macs(inp, out) -> int``
  (e.g. GCANet's shared depthwise ``ShareSepConv``: its non-zero taps per output element).
* Functional operations inside ``forward`` (element-wise products of attention maps,
  additions, ``F.interpolate`` calls) are not counted; they are a fraction of a percent for
  convolutional restoration networks (see the README's model table).

Shapes are found by a forward pass on the meta device (no arithmetic runs, so even the
official networks at 256x256 are counted in milliseconds); the weights themselves are read
from the real module to count non-zeros.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils import parametrize

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
TRANSPOSED_CONV_TYPES = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
PRUNABLE_TYPES = CONV_TYPES + TRANSPOSED_CONV_TYPES + (nn.Linear,)
_NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
               nn.GroupNorm, nn.LayerNorm)
_ACTIVATION_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.GELU, nn.SiLU,
                     nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Softplus)
_POOL_TYPES = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
               nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)
_UPSAMPLE_TYPES = (nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle)


@dataclass
class LayerCost:
    """Cost of one leaf module, summed over all its calls in one forward pass."""

    name: str
    kind: str
    params: int
    params_nonzero: int
    macs: int
    macs_dense: int
    calls: int = 0
    prunable: bool = False
    weight_shape: tuple[int, ...] = ()

    @property
    def keep_ratio(self) -> float:
        return self.params_nonzero / self.params if self.params else 1.0


@dataclass
class CostReport:
    """Per-layer and total MACs and parameters of a model at one input size."""

    input_size: tuple[int, ...]
    layers: list[LayerCost] = field(default_factory=list)
    params: int = 0
    params_nonzero: int = 0

    @property
    def macs(self) -> int:
        """MACs with zero/masked weights not counted."""
        return sum(layer.macs for layer in self.layers)

    @property
    def macs_dense(self) -> int:
        """MACs as if every weight were non-zero."""
        return sum(layer.macs_dense for layer in self.layers)

    def layer(self, name: str) -> LayerCost:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def as_dict(self) -> dict[str, object]:
        return {
            "input_size": list(self.input_size),
            "macs": self.macs, "macs_dense": self.macs_dense,
            "params": self.params, "params_nonzero": self.params_nonzero,
            "layers": [{"name": c.name, "kind": c.kind, "weight_shape": list(c.weight_shape),
                        "params": c.params, "params_nonzero": c.params_nonzero,
                        "macs": c.macs, "macs_dense": c.macs_dense, "calls": c.calls,
                        "prunable": c.prunable} for c in self.layers],
        }


PRUNABLE_MODULES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
"""The layers whose weights pruning masks and MAC accounting follows per weight."""


def prunable_modules(network: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every Conv2d, ConvTranspose2d and Linear of ``network`` with its dotted name."""
    return [(name, module) for name, module in network.named_modules()
            if isinstance(module, PRUNABLE_MODULES) and name]


def execution_order(network: nn.Module, input_size: tuple[int, int, int]) -> list[str]:
    """Names of the prunable layers in the order a forward pass first calls them.

    Shapes only: the forward runs on the meta device when the network allows it, else on a
    zero image on the network's device.
    """
    order: list[str] = []
    handles = []
    for name, module in prunable_modules(network):
        def hook(mod: nn.Module, args: tuple, out: object, _name: str = name) -> None:
            if _name not in order:
                order.append(_name)
        handles.append(module.register_forward_hook(hook))
    try:
        tensors = {n: torch.empty_like(t, device="meta")
                   for n, t in list(network.named_parameters()) + list(network.named_buffers())}
        with torch.no_grad():
            try:
                torch.func.functional_call(network, tensors,
                                           (torch.zeros((1, *input_size), device="meta"),),
                                           strict=False)
            except RuntimeError:  # includes ops without a meta kernel
                order.clear()
                device = next((p.device for p in network.parameters()), torch.device("cpu"))
                network(torch.zeros((1, *input_size), device=device))
    finally:
        for handle in handles:
            handle.remove()
    return order


def _own_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The module's own parameters as the forward sees them (after parametrizations)."""
    names = [n for n, _ in module.named_parameters(recurse=False)]
    if parametrize.is_parametrized(module):
        names += list(module.parametrizations.keys())
    return [getattr(module, n) for n in names]


def _nonzero(tensor: torch.Tensor) -> int:
    """Non-zero elements; a meta tensor (no values) counts as dense."""
    if tensor.is_meta:
        return tensor.numel()
    return int(torch.count_nonzero(tensor.detach()))


def _leaf_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    leaves = []
    for name, module in model.named_modules():
        if isinstance(module, parametrize.ParametrizationList):
            continue
        children = [c for c in module.children() if not isinstance(c, parametrize.ParametrizationList)]
        if not children or isinstance(module, PRUNABLE_TYPES):
            leaves.append((name, module))
    return leaves


def _per_call_cost(module: nn.Module, inp: torch.Tensor, out: torch.Tensor,
                   weight_count: int) -> int:
    """MACs of one call of ``module`` with ``weight_count`` weight elements counted."""
    out_numel = out.numel()
    own_count = getattr(module, "count_macs", None)
    if callable(own_count):  # a custom leaf module that states its own cost
        return int(own_count(inp, out))
    if isinstance(module, CONV_TYPES):
        spatial = math.prod(out.shape[2:]) * out.shape[0]
        return weight_count * spatial + (out_numel if module.bias is not None else 0)
    if isinstance(module, TRANSPOSED_CONV_TYPES):
        spatial = math.prod(inp.shape[2:]) * inp.shape[0]
        return weight_count * spatial + (out_numel if module.bias is not None else 0)
    if isinstance(module, nn.Linear):
        positions = out_numel // module.out_features
        return weight_count * positions + (out_numel if module.bias is not None else 0)
    if isinstance(module, _NORM_TYPES):
        affine = getattr(module, "affine", False) or getattr(module, "elementwise_affine", False)
        return out_numel * (2 if affine else 1)
    if isinstance(module, _ACTIVATION_TYPES):
        return out_numel
    if isinstance(module, _POOL_TYPES):
        return inp.numel()
    if isinstance(module, _UPSAMPLE_TYPES):
        return out_numel
    return 0


def _first_tensor(value: object) -> torch.Tensor | None:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


@contextmanager
def weights_on_meta(model: nn.Module) -> Iterator[None]:
    """Temporarily swap every parameter and buffer for a meta tensor of the same shape.

    Done module by module (not with ``functional_call``) so that shared modules and
    parametrizations are restored exactly.
    """
    saved: list[tuple[dict, str, torch.Tensor]] = []
    seen: set[int] = set()
    try:
        for module in model.modules():
            if id(module) in seen:
                continue
            seen.add(id(module))
            for store in (module._parameters, module._buffers):
                for key, tensor in list(store.items()):
                    if tensor is None or tensor.is_meta:
                        continue
                    saved.append((store, key, tensor))
                    meta = torch.empty_like(tensor, device="meta")
                    store[key] = nn.Parameter(meta, tensor.requires_grad) \
                        if isinstance(tensor, nn.Parameter) else meta
        yield
    finally:
        for store, key, tensor in reversed(saved):
            store[key] = tensor


def _meta_shapes(model: nn.Module, input_size: tuple[int, ...],
                 leaves: list[tuple[str, nn.Module]]) -> dict[str, list[tuple[tuple, tuple]]]:
    """Shapes from a forward on the meta device; falls back to a real zero input."""
    calls: dict[str, list[tuple[tuple, tuple]]] = {name: [] for name, _ in leaves}
    handles = []
    for name, module in leaves:
        def hook(mod: nn.Module, args: tuple, out: object, _name: str = name) -> None:
            inp, res = _first_tensor(args), _first_tensor(out)
            if inp is not None and res is not None:
                calls[_name].append((tuple(inp.shape), tuple(res.shape)))
        handles.append(module.register_forward_hook(hook))
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            try:
                with weights_on_meta(model):
                    model(torch.zeros((1, *input_size), device="meta"))
            except RuntimeError:  # includes ops without a meta kernel
                for values in calls.values():
                    values.clear()
                model(torch.zeros((1, *input_size), device=device))
    finally:
        for handle in handles:
            handle.remove()
    return calls


def count_costs(model: nn.Module, input_size: tuple[int, ...] = (3, 256, 256)) -> CostReport:
    """Count MACs and parameters of ``model`` for one input of shape ``input_size``.

    Args:
        model: any module taking one ``(1, *input_size)`` tensor.
        input_size: ``(C, H, W)`` of one input.

    Returns:
        A :class:`CostReport` with one row per leaf module that has a cost or parameters.
    """
    was_training = model.training
    model.eval()
    leaves = _leaf_modules(model)
    try:
        calls = _meta_shapes(model, tuple(input_size), leaves)
    finally:
        model.train(was_training)
    report = CostReport(input_size=tuple(input_size))
    for name, module in leaves:
        tensors = _own_tensors(module)
        params = sum(t.numel() for t in tensors)
        nonzero = sum(_nonzero(t) for t in tensors)
        prunable = isinstance(module, PRUNABLE_TYPES)
        weight_dense = weight_kept = 0
        shape: tuple[int, ...] = ()
        if prunable:
            weight = module.weight.detach()  # masked when a parametrization is attached
            shape = tuple(weight.shape)
            weight_dense, weight_kept = weight.numel(), _nonzero(weight)
        macs = dense = 0
        for in_shape, out_shape in calls.get(name, []):
            inp, out = torch.empty(in_shape, device="meta"), torch.empty(out_shape, device="meta")
            macs += _per_call_cost(module, inp, out, weight_kept)
            dense += _per_call_cost(module, inp, out, weight_dense)
        if params or dense:
            report.layers.append(LayerCost(name=name, kind=type(module).__name__, params=params,
                                           params_nonzero=nonzero, macs=macs, macs_dense=dense,
                                           calls=len(calls.get(name, [])), prunable=prunable,
                                           weight_shape=shape))
    report.params = sum(layer.params for layer in report.layers)
    report.params_nonzero = sum(layer.params_nonzero for layer in report.layers)
    return report
