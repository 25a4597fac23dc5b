"""Unstructured pruning (``--granularity unstructured``, the paper's method): fixed weight masks
on a copy of the teacher.

* :mod:`~dreamprune_cli.prune.unstructured.masks` -- which layers may be pruned, fixed binary
  masks attached with ``torch.nn.utils.parametrize``, the plain state dict with pruned weights
  at zero;
* :mod:`~dreamprune_cli.prune.unstructured.budget` -- kept MACs as a linear function of the
  weights kept per layer, read from the project's MAC counter; reachable targets;
* :mod:`~dreamprune_cli.prune.unstructured.allocators` -- how many weights each layer keeps
  (uniform, global, ERK, LAMP), each meeting the target by bisection on its own scalar;
* :mod:`~dreamprune_cli.prune.unstructured.drift` -- the adaptive allocator: per-layer drift
  curves and the Lagrangian choice;
* :mod:`~dreamprune_cli.prune.unstructured.plan` -- the planner: plan, allocate, mask, verify
  (:func:`~dreamprune_cli.prune.unstructured.plan.prune_model`).
"""
