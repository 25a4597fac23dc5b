"""The parts the subcommands of :mod:`dreamprune_cli.runs` are built from, none of them a
subcommand: the run context (:mod:`~dreamprune_cli.runkit.context`: device, teacher,
evaluation pairs, recorded settings, seeded generators), the checks made before any work
(:mod:`~dreamprune_cli.runkit.checks`), the dream folder's files
(:mod:`~dreamprune_cli.runkit.dream_files`), and the pipeline's pictures and time estimate
(:mod:`~dreamprune_cli.runkit.pictures`, :mod:`~dreamprune_cli.runkit.estimate`).

They read the settings and write run folders, so they sit between ``runs/`` and the layers
below (``settings``, ``run_record``, ``report``, then ``engine`` and ``prune``); they never
import ``runs/``."""
