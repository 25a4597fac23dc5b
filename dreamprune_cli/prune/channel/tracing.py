"""Torch-Pruning's dependency graph of a network, with the corrections our architectures need.

:func:`build_graph` traces a network with Torch-Pruning (``torch_pruning``) and corrects what
the library (1.6) gets wrong on restoration networks, upstream-style (no model is changed):

* **channel-broadcast products** (:func:`decouple_channel_broadcasts`): ``x * g`` with ``g``
  of shape ``(N, 1, H, W)`` (pixel or spatial attention, GCANet's gates) does not couple the
  ``C`` channels of ``x`` to the map's one channel; the library couples them, which freezes
  every channel that passes through such a gate;
* **concatenations with an untraced operand** (:func:`complete_constant_concats`): in
  ``torch.cat((x, state), 1)`` where ``state`` carries no autograd history (a recurrent
  state's zeros at the first step, the network's input), the library sees one operand and
  maps the concatenation's channels onto ``x`` one to one, so pruning ``state``'s channels
  reaches past ``x``'s end (PReNet's and AGANet's LSTM gates: "index out of bounds"). The
  missing operand gets a placeholder node of the right width and the offsets are recomputed;
* **channel-preserving layers** (:data:`CHANNELWISE_ATTRIBUTE`): a module class that declares
  ``preserves_channels = True`` computes output channel ``i`` from input channel ``i`` alone
  and holds no tensor with a channel dimension (GCANet's ``ShareSepConv``: one ``k x k``
  kernel shared by every channel). It is registered with the library as a customised layer
  that passes channel removals through unchanged; otherwise its parameters are "unwrapped"
  and the library prunes their last dimension (the kernel's width).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.prune.channel.graph import indexed_graph_class
from dreamprune_cli.prune.channel.library import torch_pruning

log = logging.getLogger(__name__)

CHANNELWISE_ATTRIBUTE = "preserves_channels"
"""Class attribute by which a module declares itself channel-preserving (see the module
docstring); such a module is never resized and its parameters are never pruned."""

_BROADCAST_PRODUCTS = ("MulBackward", "DivBackward")


def _channel_dim(shape: tuple[int, ...] | torch.Size) -> int | None:
    return int(shape[1]) if len(shape) >= 3 else None


def decouple_channel_broadcasts(graph: Any) -> list[str]:
    """Drop the coupling between ``x`` and a channel-broadcast factor of ``x * g``.

    ``g`` of shape ``(N, 1, ...)`` multiplies (or divides) every channel of ``x`` alike:
    removing a channel of ``x`` does not touch ``g``, and ``g``'s single channel says nothing
    about ``x``'s. Returns the names of the product nodes that were decoupled.
    """
    tp = torch_pruning()
    decoupled = []
    for node in list(graph.module2node.values()):
        if node.type != tp.ops.OPTYPE.ELEMENTWISE or node.grad_fn is None:
            continue
        name = node.grad_fn.name() if hasattr(node.grad_fn, "name") else ""
        if not name.startswith(_BROADCAST_PRODUCTS):
            continue
        saved = []
        for attr in ("_saved_self", "_saved_other"):
            try:
                value = getattr(node.grad_fn, attr)
            except (AttributeError, RuntimeError):
                value = None
            saved.append(value if isinstance(value, torch.Tensor) else None)
        if any(v is None for v in saved):
            continue
        dims = [_channel_dim(v.shape) for v in saved]
        if None in dims or dims[0] == dims[1] or min(dims) != 1:
            continue
        narrow = node.grad_fn.next_functions[dims.index(1)][0]
        for other in node.inputs:
            if other.grad_fn is narrow:
                node.dependencies = [d for d in node.dependencies if d.target is not other]
                other.dependencies = [d for d in other.dependencies if d.target is not node]
                decoupled.append(str(node.name or name))
    return decoupled


def _is_traced_operand(function: Any, unwrapped: list[Any]) -> bool:
    """Whether the library made a graph node of this entry of a ``next_functions`` list."""
    if function is None:
        return False
    if hasattr(function, "name") and "accumulategrad" in function.name().lower():
        return any(function.variable is p for p, _ in unwrapped)  # a leaf: only unwrapped ones
    return True


def complete_constant_concats(graph: Any) -> list[str]:
    """Give each channel concatenation with untraced operands a placeholder per missing run.

    The widths of the traced operands and of the result come from the library's shape
    inference; the untraced operands must be one contiguous run (their total width is the
    difference). A concatenation whose widths cannot be inferred is left as traced. The
    placeholder is an element-wise node without inputs: removing one of its channels
    removes that channel of the concatenation and of nothing else (the constant's width is
    the model's business: PReNet reads its state's width from the gate convolution).

    Returns the names of the completed concatenation nodes.
    """
    tp = torch_pruning()
    from torch_pruning.dependency import Dependency, Node
    from torch_pruning.dependency.index_mapping import update_concat_index_mapping
    from torch_pruning.dependency.shape_infer import (infer_channels_between,
                                                      infer_in_channels_recursively)

    completed = []
    for node in list(graph.module2node.values()):
        if node.type != tp.ops.OPTYPE.CONCAT or node.grad_fn is None:
            continue
        dim = getattr(node.grad_fn, "_saved_dim", 1)
        if dim not in (1, -3):
            continue
        entries = [_is_traced_operand(f, graph.unwrapped_parameters)
                   for f, _ in node.grad_fn.next_functions]
        if all(entries) or sum(entries) != len(node.inputs):
            continue
        first, last = entries.index(False), len(entries) - 1 - entries[::-1].index(False)
        if not all(not traced for traced in entries[first:last + 1]):
            log.debug("%s: untraced operands are not contiguous; left as traced", node.name)
            continue
        total = infer_in_channels_recursively(graph, node, recursive_depth=[0])
        sizes = [infer_channels_between(graph, n, node) for n in node.inputs]
        if total is None or any(s is None for s in sizes) or total <= sum(sizes):
            log.debug("%s: widths unknown (%s of %s); left as traced", node.name, sizes, total)
            continue
        position = sum(entries[:first])  # traced operands before the missing run
        placeholder = Node(module=tp.ops._ElementWiseOp(graph._op_id, "UntracedOperand"),
                           grad_fn=None, name=f"untraced operand of {node.name}")
        graph._op_id += 1
        graph.module2node[placeholder.module] = placeholder
        node.inputs.insert(position, placeholder)
        placeholder.add_output(node)
        concat_pruner = graph.get_pruner_of_module(node.module)
        constant_pruner = graph.get_pruner_of_module(placeholder.module)
        node.dependencies.append(Dependency(
            trigger=concat_pruner.prune_in_channels, handler=constant_pruner.prune_out_channels,
            source=node, target=placeholder))
        placeholder.dependencies.append(Dependency(
            trigger=constant_pruner.prune_out_channels, handler=concat_pruner.prune_in_channels,
            source=placeholder, target=node))
        sizes.insert(position, total - sum(sizes))
        node.module.concat_sizes = sizes
        update_concat_index_mapping(graph, node)
        completed.append(str(node.name))
    return completed


def _channelwise_pruner(tp: Any) -> Any:
    """A Torch-Pruning pruner for channel-preserving layers: removals pass through."""

    class ChannelwisePruner(tp.pruner.function.BasePruningFunc):
        TARGET_MODULES = None

        def prune_out_channels(self, layer: nn.Module, idxs: list[int]) -> nn.Module:
            return layer  # no tensor of the layer has a channel dimension

        prune_in_channels = prune_out_channels  # output channel i is input channel i

        def get_out_channels(self, layer: nn.Module) -> None:
            return None

        def get_in_channels(self, layer: nn.Module) -> None:
            return None

    return ChannelwisePruner()


def channelwise_types(network: nn.Module) -> list[type]:
    """The module classes in ``network`` that declare ``preserves_channels = True``."""
    found: list[type] = []
    for module in network.modules():
        cls = type(module)
        if getattr(cls, CHANNELWISE_ATTRIBUTE, False) is True and cls not in found:
            found.append(cls)
    return found


@contextmanager
def failing_layer(network: nn.Module) -> Iterator[list[str]]:
    """Name the layer whose forward raises inside the ``with`` block.

    Yields a list that, when the block raises, holds the names of the modules whose forward
    was running, outermost first (``where[-1]`` is the layer at fault); the exception
    propagates.
    """
    names = {module: name for name, module in network.named_modules()}
    stack: list[str] = []
    failed: list[str] = []

    def enter(module: nn.Module, _args: object) -> None:
        stack.append(names.get(module, type(module).__name__))

    def leave(module: nn.Module, _args: object, _out: object) -> None:
        if stack:
            stack.pop()

    handles = [m.register_forward_pre_hook(enter) for m in network.modules() if m is not network]
    handles += [m.register_forward_hook(leave) for m in network.modules() if m is not network]
    try:
        yield failed
    except BaseException:
        failed.extend(stack)
        raise
    finally:
        for handle in handles:
            handle.remove()


def build_graph(network: nn.Module, example: torch.Tensor) -> Any:
    """Trace ``network`` on ``example`` into a corrected Torch-Pruning dependency graph.

    ``network`` (a copy: its parameters are set to require gradients, which the library's
    autograd tracing needs; a teacher frozen for dreaming has none) is left in eval mode.
    The graph's group search is the indexed one of
    :func:`~dreamprune_cli.prune.channel.graph.indexed_graph_class` (the library's groups, in
    time linear in their size).

    Raises:
        UsageError: naming the layer (and its class) whose forward the library cannot trace,
            or the operation when it fails outside any layer.
    """
    tp = torch_pruning()
    network.eval()
    for parameter in network.parameters():
        parameter.requires_grad_(True)
    channelwise = channelwise_types(network)
    pruner = _channelwise_pruner(tp) if channelwise else None
    try:
        with failing_layer(network) as failed, torch.enable_grad():  # traced via autograd
            graph = indexed_graph_class()().build_dependency(
                network, example_inputs=example, verbose=False,
                customized_pruners={cls: pruner for cls in channelwise})
    except Exception as exc:
        modules = dict(network.named_modules())
        where = (f"layer {failed[-1]} ({type(modules[failed[-1]]).__name__})"
                 if failed and failed[-1] in modules else "this network")
        first_line = (str(exc).splitlines() or [""])[0]
        raise UsageError(f"channel pruning: Torch-Pruning cannot trace {where} "
                         f"({type(exc).__name__}: {first_line}); use $granularity "
                         "unstructured") from exc
    decouple_channel_broadcasts(graph)
    complete_constant_concats(graph)
    unwrapped = [graph._param_to_name.get(p, "?") for p, _ in graph.unwrapped_parameters]
    if unwrapped:
        log.debug("channel pruning: parameters outside standard layers (their last non-"
                  "singleton dimension is pruned): %s", ", ".join(sorted(unwrapped)))
    return graph
