"""The loops and losses: dreaming (``dream.py``), distillation (``distill.py``), the joint
loop (``joint.py``), evaluation (``evaluate.py``, ``tiling.py``), losses and features, and
the runtime they run on (``runtime.py``: device and precision; ``threads.py``).

Nothing here reads settings or writes run folders (that is :mod:`dreamprune_cli.runs`), and
nothing here imports :mod:`dreamprune_cli.prune` (a student arrives already masked)."""
