"""Depth pruning: remove whole residual blocks and repeated stages (``--granularity depth``),
alone or with channel pruning (``depth+channel``).

* :mod:`~dreamprune_cli.prune.depth.candidates` -- what may be removed (traced residual
  blocks, declared branches and repeat counts);
* :mod:`~dreamprune_cli.prune.depth.search` -- which: lazy greedy by measured drift per MAC
  saved;
* :mod:`~dreamprune_cli.prune.depth.plan` -- the pruning API returning a
  :class:`~dreamprune_cli.prune.result.PruneResult`.

The student file records the removed modules (:mod:`dreamprune_cli.models.depth`) and its
lowered repeat counts in its config, so every subcommand rebuilds it without pickle or
Torch-Pruning.
"""
