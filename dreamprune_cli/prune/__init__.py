"""Pruning a teacher to a MAC target, at four granularities behind one result type
(:class:`~dreamprune_cli.prune.plan.PruneResult`):

* ``unstructured`` -- weight masks (the paper's method): the modules below;
* ``channel`` -- whole channels removed with Torch-Pruning (``channels``, ``channel_plan``);
* ``depth`` and ``depth+channel`` -- whole residual blocks and repeated stages removed
  (:mod:`dreamprune_cli.prune.depth`), alone or with channels.

* :mod:`~dreamprune_cli.prune.masks` -- which layers may be pruned, fixed binary masks attached
  with ``torch.nn.utils.parametrize``, and the plain state dict with pruned weights at zero.
* :mod:`~dreamprune_cli.prune.budget` -- kept MACs as a linear function of the weights kept
  per layer, read from the project's MAC counter; reachable targets.
* :mod:`~dreamprune_cli.prune.allocators` -- how many weights each layer keeps (uniform,
  global, ERK, LAMP), each meeting the target by bisection on its own scalar.
* :mod:`~dreamprune_cli.prune.drift` -- the adaptive allocator: per-layer drift curves and the
  Lagrangian choice.
* :mod:`~dreamprune_cli.prune.plan` -- the pruning API: plan, allocate, mask, verify.
* :mod:`~dreamprune_cli.prune.channels`, :mod:`~dreamprune_cli.prune.channel_plan` -- channel
  pruning (whole channels removed with Torch-Pruning), returning the same result;
  :mod:`~dreamprune_cli.prune.tracing` -- the library's dependency graph and its corrections.
  :mod:`~dreamprune_cli.prune.channel_drift` -- the adaptive allocator's channel form.
* :mod:`~dreamprune_cli.prune.student` -- the one writer and reader of student and mask files.

The allocator names below are the one definition the settings, the planner and the help
read (this module imports nothing, so the settings can use it without importing PyTorch).
"""

GRANULARITIES: tuple[str, ...] = ("unstructured", "channel", "depth", "depth+channel")
"""What a student may lose: weights (masks), channels, blocks and stages, or both of the last
(``dreamprune_cli.models.loading.STRUCTURED`` are the three that make a smaller network)."""

ALLOCATORS: tuple[str, ...] = ("uniform", "global", "erk", "lamp", "adaptive")
"""Every allocator of unstructured pruning: the magnitude ones
(:data:`~dreamprune_cli.prune.allocators.MAGNITUDE_ALLOCATORS`) and ``adaptive`` (drift)."""

CHANNEL_ALLOCATORS: tuple[str, ...] = ("uniform", "global", "lamp", "adaptive")
"""The allocators that have a channel form (:mod:`~dreamprune_cli.prune.channels`)."""

