"""Unstructured magnitude pruning to an exact MAC target.

* :mod:`~dreamprune_cli.prune.masks` -- which layers may be pruned, fixed binary masks attached
  with ``torch.nn.utils.parametrize``, and the plain state dict with pruned weights at zero.
* :mod:`~dreamprune_cli.prune.budget` -- kept MACs as a linear function of the weights kept
  per layer, read from the project's MAC counter; reachable targets.
* :mod:`~dreamprune_cli.prune.allocators` -- how many weights each layer keeps (uniform,
  global, ERK, LAMP), each meeting the target by bisection on its own scalar.
* :mod:`~dreamprune_cli.prune.drift` -- the adaptive allocator: per-layer drift curves and the
  Lagrangian choice.
* :mod:`~dreamprune_cli.prune.calibration` -- the inputs the drift is measured on.
"""
