"""Channel pruning (``--granularity channel``): whole channels removed with Torch-Pruning, a
thinner copy of the teacher.

* :mod:`~dreamprune_cli.prune.channel.library` -- the one import of ``torch_pruning``;
* :mod:`~dreamprune_cli.prune.channel.graph` -- channel groups and the recorded removal steps
  (one trace, every candidate pruned from its record);
* :mod:`~dreamprune_cli.prune.channel.tracing` -- the library's dependency graph and its
  corrections;
* :mod:`~dreamprune_cli.prune.channel.drift` -- the adaptive allocator's channel form:
  per-group drift curves;
* :mod:`~dreamprune_cli.prune.channel.allocate` -- groups, protected layers, and the
  allocation to a MAC target (validation, drift, bisection, refinement);
* :mod:`~dreamprune_cli.prune.channel.plan` -- the planner
  (:func:`~dreamprune_cli.prune.channel.plan.prune_channels`).
"""
