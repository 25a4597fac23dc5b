"""Pruning a teacher to a MAC target at four granularities, one subpackage each, behind one
spec and one result type.

* ``unstructured`` -- fixed weight masks on a copy of the teacher (the paper's method):
  :mod:`dreamprune_cli.prune.unstructured`;
* ``channel`` -- whole channels removed with Torch-Pruning, a thinner network:
  :mod:`dreamprune_cli.prune.channel`;
* ``depth`` and ``depth+channel`` -- whole residual blocks and repeated stages removed, alone
  or with channels (the channel part is :mod:`~dreamprune_cli.prune.channel`'s planner):
  :mod:`dreamprune_cli.prune.depth`.

The seam, shared by all of them:

* :mod:`~dreamprune_cli.prune.spec` -- :class:`~dreamprune_cli.prune.spec.PruneSpec`, what to
  do, every value already decided (``dreamprune_cli.settings.resolve_prune_spec`` builds it
  once per run from the settings and their sources; nothing here reads where a value came
  from); the shared defaults and the exclusion globs;
* :mod:`~dreamprune_cli.prune.dispatch` -- ``prune_to_spec``: the spec to its granularity's
  planner;
* :mod:`~dreamprune_cli.prune.result` -- :class:`~dreamprune_cli.prune.result.PruneResult`,
  what every planner returns, and ``write_prune_outputs``;
* :mod:`~dreamprune_cli.prune.student` -- the one writer and reader of student and mask files.

A granularity's subpackage imports the shared modules and the layers below (``models``,
``data``, the base), never another granularity's internals (``depth+channel`` calls the
channel planner, its public entry point).

The names below are the one definition the settings, the planners and the help read (this
module imports nothing, so the settings can use it without importing PyTorch).
"""

GRANULARITY_SUMMARIES: dict[str, str] = {
    "unstructured": "weight masks, the default",
    "channel": "remove whole channels: a thinner, faster network",
    "depth": "remove whole residual blocks and repeated stages, chosen by measured drift",
    "depth+channel": "both, the split chosen by drift; the allocator is the channel part's",
}
"""Each granularity and what it removes, in the words ``--granularity``'s help prints."""

GRANULARITIES: tuple[str, ...] = tuple(GRANULARITY_SUMMARIES)
"""What a student may lose: weights (masks), channels, blocks and stages, or both of the last
(``dreamprune_cli.models.loading.STRUCTURED`` are the three that make a smaller network)."""

ALLOCATORS: tuple[str, ...] = ("uniform", "global", "erk", "lamp", "adaptive")
"""Every allocator of unstructured pruning: the magnitude ones
(:data:`~dreamprune_cli.prune.unstructured.allocators.MAGNITUDE_ALLOCATORS`) and ``adaptive`` (drift)."""

CHANNEL_ALLOCATORS: tuple[str, ...] = ("uniform", "global", "lamp", "adaptive")
"""The allocators that have a channel form (:mod:`~dreamprune_cli.prune.channel.allocate`)."""

