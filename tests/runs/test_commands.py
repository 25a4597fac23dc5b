"""What the command tests share (tiny sizes, few steps): ``TINY`` flags, a small random FFA's
weights, a pruned student. The tests of each command are in its own file (``test_dream.py``,
``test_distill.py``, ``test_pipeline.py``, ...)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dreamprune_cli.cli import app

pytestmark = pytest.mark.slow  # whole commands, end to end (CI runs them too)

TINY = ["--variant", "tiny", "--device", "cpu", "--size", "32", "--batch-size", "2"]


def _ffa_weights(tmp_path: Path) -> Path:
    """A small random FFA saved by dreamprune (so tests never depend on bundled teachers)."""
    from dreamprune_cli.models.checkpoint import save_safetensors
    from dreamprune_cli.models.registry import build_model, model_config

    config = model_config("ffa", "tiny", blocks=1)
    torch.manual_seed(0)
    network = build_model("ffa", "tiny", blocks=1)
    return save_safetensors(tmp_path / "ffa_small.safetensors", network.state_dict(), "ffa",
                            config)


def _prune(runner, weights: Path, out: Path) -> Path:
    result = runner.invoke(app, ["prune", "--weights", str(weights), "--flops-target", "0.6",
                                 "--allocator", "lamp", "--flops-size", "64", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out / "student.safetensors"
