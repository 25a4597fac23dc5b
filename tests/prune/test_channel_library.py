"""``dreamprune_cli.prune.channel.library``: Torch-Pruning imported on first use."""

from __future__ import annotations

import sys

from dreamprune_cli.prune.channel.library import torch_pruning


def test_the_library_module_is_returned() -> None:
    tp = torch_pruning()
    assert tp is sys.modules["torch_pruning"] and tp is torch_pruning()
    assert hasattr(tp, "DependencyGraph") and hasattr(tp, "pruner")
