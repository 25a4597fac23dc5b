"""What depth pruning may remove from a network: residual blocks, residual branches, repeats.

* **blocks** -- submodules that compute ``x + f(x)`` (optionally followed by a ReLU) from
  their one input: found by tracing each submodule's own ``forward`` with ``torch.fx`` (its
  children kept as leaves) and checking that its output is that sum, plus the globs a model
  declares (``ModelInfo.depth_blocks``). Removed, a block is the identity.
* **branches** -- submodules whose output their parent adds to their input, declared by the
  model (``ModelInfo.depth_branches``: PReNet's ``res_conv*``, AGANet's ``det_conv1..5``).
  Removed, a branch returns zeros.
* **repeats** -- constructor keys counting stages run with shared weights
  (``ModelInfo.depth_repeats``: PReNet's ``stages``); each may be lowered to 1.

A candidate must keep its input's shape (checked on a probe forward pass), must be called by
that pass, and must not contain a layer the model keeps (``prune_exclude``: the layers that
read the input or write the image) or its penultimate layer.
"""

from __future__ import annotations

import fnmatch
import logging
import operator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import fx, nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.loading import LoadedModel

log = logging.getLogger(__name__)

_ADDS = {operator.add, operator.iadd, torch.add}
_RELUS = {F.relu, torch.relu, torch.relu_}


@dataclass
class DepthSpace:
    """Every cut depth pruning may make on one network.

    Attributes:
        blocks: module names replaceable by the identity, in call order.
        branches: module names replaceable by zeros, in call order.
        repeats: constructor key -> the teacher's count (lowered one at a time, to 1).
    """

    blocks: list[str] = field(default_factory=list)
    branches: list[str] = field(default_factory=list)
    repeats: dict[str, int] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.blocks or self.branches or any(v > 1 for v in self.repeats.values()))

    def as_dict(self) -> dict[str, object]:
        return {"blocks": self.blocks, "branches": self.branches, "repeats": self.repeats}


class _ChildrenAsLeaves(fx.Tracer):
    """Traces one module's own ``forward``: every submodule it calls is a leaf."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:  # noqa: ARG002
        return True


def _unwrap_relu(node: fx.Node, module: nn.Module) -> fx.Node:
    """The node a trailing ReLU is applied to (``node`` itself when there is none)."""
    if node.op == "call_function" and node.target in _RELUS:
        return node.args[0]  # type: ignore[return-value]
    if node.op == "call_method" and node.target in ("relu", "relu_"):
        return node.args[0]  # type: ignore[return-value]
    if node.op == "call_module" and isinstance(module.get_submodule(str(node.target)),
                                               nn.ReLU):
        return node.args[0]  # type: ignore[return-value]
    return node


def is_residual_block(module: nn.Module) -> bool:
    """Whether ``module.forward`` returns ``x + f(x)`` or ``relu(x + f(x))`` of its one input.

    Read from a ``torch.fx`` trace of the module's own forward (its children are leaves); a
    forward that cannot be traced (data-dependent control flow, tensor shapes used as numbers)
    is not a block.
    """
    try:
        graph = _ChildrenAsLeaves().trace(module)
    except Exception:  # noqa: BLE001 -- any untraceable forward simply is no candidate
        return False
    placeholders = [node for node in graph.nodes if node.op == "placeholder"]
    outputs = [node for node in graph.nodes if node.op == "output"]
    if len(placeholders) != 1 or len(outputs) != 1 or not isinstance(outputs[0].args[0], fx.Node):
        return False
    node = _unwrap_relu(outputs[0].args[0], module)
    is_sum = (node.op == "call_function" and node.target in _ADDS) or (
        node.op == "call_method" and node.target in ("add", "add_"))
    return is_sum and placeholders[0] in node.args[:2]


def _keeps_shapes(args: tuple, output: object) -> bool:
    """Whether a call's output has its inputs' structure: one tensor of the input's shape, or
    a tuple of tensors shaped like the inputs (a block of several streams, DuRN's DuRB)."""
    if not args or not all(isinstance(a, torch.Tensor) for a in args):
        return False
    if len(args) == 1:
        return isinstance(output, torch.Tensor) and output.shape == args[0].shape
    return isinstance(output, tuple) and len(output) == len(args) and all(
        isinstance(o, torch.Tensor) and o.shape == a.shape for o, a in zip(output, args))


def _shape_keeping_calls(network: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of the submodules a forward pass on ``example`` calls with tensors and that
    return tensors of the same shapes (every call, :func:`_keeps_shapes`), in first-call
    order."""
    names = {module: name for name, module in network.named_modules() if name}
    order: list[str] = []
    broken: set[str] = set()

    def hook(module: nn.Module, args: tuple, output: object) -> None:
        name = names[module]
        if not _keeps_shapes(args, output):
            broken.add(name)
        if name not in order:
            order.append(name)

    handles = [module.register_forward_hook(hook) for module in names]
    try:
        with torch.no_grad():
            network(example)
    finally:
        for handle in handles:
            handle.remove()
    return [name for name in order if name not in broken]


def glob_matches(name: str, pattern: str) -> bool:
    """Whether dotted ``name`` matches ``pattern`` part by part (``res_conv*`` matches
    ``res_conv1``, not ``res_conv1.0``; ``g*.gp.*`` matches ``g1.gp.3``)."""
    parts, pattern_parts = name.split("."), pattern.split(".")
    return len(parts) == len(pattern_parts) and all(
        fnmatch.fnmatchcase(part, glob) for part, glob in zip(parts, pattern_parts))


def _matching(names: list[str], patterns: tuple[str, ...]) -> list[str]:
    return [name for name in names if any(glob_matches(name, p) for p in patterns)]


def _inside(name: str, blocks: list[str]) -> bool:
    """Whether ``name`` lies inside one of ``blocks`` (a declared block is removed whole)."""
    return any(name.startswith(block + ".") for block in blocks)


def _contains(block: str, layer: str) -> bool:
    return layer == block or layer.startswith(block + ".")


def find_depth_space(loaded: LoadedModel, example: torch.Tensor) -> DepthSpace:
    """The blocks, branches and repeats of ``loaded`` (see the module docstring).

    Args:
        loaded: the teacher; its network is only run, not changed.
        example: a probe input of the bare network, ``(1, C, H, W)``.

    Raises:
        UsageError: the model has nothing depth pruning can remove (naming the model and what
            a custom model may declare).
    """
    info, network = loaded.info, loaded.network
    modules = dict(network.named_modules())
    called = _shape_keeping_calls(network, example)
    kept_layers = [name for name in modules
                   if any(fnmatch.fnmatchcase(name, p) for p in info.prune_exclude)]
    if info.penultimate_layer:
        kept_layers.append(info.penultimate_layer)

    def allowed(name: str) -> bool:
        return not any(_contains(name, layer) for layer in kept_layers)

    declared_blocks = _matching(called, info.depth_blocks)
    traced = [name for name in called if name not in declared_blocks
              and not _inside(name, declared_blocks)
              and any(True for _ in modules[name].children()) and is_residual_block(modules[name])]
    blocks = [name for name in called if (name in declared_blocks or name in traced)
              and allowed(name)]
    branches = [name for name in _matching(called, info.depth_branches)
                if allowed(name) and name not in blocks]
    repeats: dict[str, int] = {}
    for key in info.depth_repeats:
        count = getattr(network, key, None)
        if not isinstance(count, int) or isinstance(count, bool):
            raise UsageError(f"model {loaded.name!r}: depth repeat {key!r} is not an integer "
                             "attribute of the network")
        repeats[key] = count
    space = DepthSpace(blocks=blocks, branches=branches, repeats=repeats)
    if not space:
        raise UsageError(
            f"model {loaded.name!r}: nothing to remove at $granularity depth (no residual "
            "block x + f(x) found by tracing, no declared depth_blocks, depth_branches or "
            "depth_repeats); use $granularity channel or unstructured")
    log.info("%s: depth candidates: %d blocks, %d branches, repeats %s", loaded.name,
             len(blocks), len(branches), repeats or "none")
    return space
