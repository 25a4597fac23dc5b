"""``dreamprune_cli.runs.evaluate`` from Python: a synthetic set made by ``runs.synth`` scored
with typed results and tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dreamprune_cli.runs import evaluate, synth
from tests.helpers import run_settings as _settings


def test_synth_then_evaluate_from_python(tmp_path: Path) -> None:
    made = synth.run(_settings(task="derain", count=2, size=32, out=tmp_path / "set"))
    assert made.out_dir == tmp_path / "set"
    assert sorted(p.name for p in (made.out_dir / "input").iterdir()) == \
        sorted(p.name for p in (made.out_dir / "target").iterdir())
    assert made.summary()["count"] == 2 and made.tables()[0].rows[0][0] == 2

    scored = evaluate.run(_settings(model="identity", input_dir=made.out_dir / "input",
                                    target_dir=made.out_dir / "target", metric_space="rgb"))
    summary = scored.summary()
    assert summary["count"] == 2 and summary["model"] == "identity"
    # identity restores nothing: its PSNR is the degraded inputs' PSNR, and the table agrees
    assert scored.tables()[0].rows[0][1] == pytest.approx(summary["psnr"])
    assert json.dumps(summary, default=str)
