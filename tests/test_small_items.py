"""Issue 32 item 5: a percentage ``--flops-target`` names the fraction it means, ``pipeline
--limit N`` scores the first N pairs as ``evaluate --limit`` (``LoadedModel`` is callable:
``tests/models/test_loading.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dreamprune_cli.cli import app
from dreamprune_cli.data.pairs import pair_folders
from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.checkpoint import save_safetensors
from dreamprune_cli.models.registry import build_model, model_config
from dreamprune_cli.settings import resolve_settings


@pytest.mark.parametrize(("value", "hint"), [("58", "; did you mean 0.58?"),
                                             ("100", "; did you mean 1?"), ("0", ""),
                                             ("150", "")])
def test_flops_target_as_a_percentage_names_the_fraction(runner, tmp_path: Path, value: str,
                                                         hint: str) -> None:
    result = runner.invoke(app, ["prune", "--model", "ffa", "--variant", "tiny",
                                 "--flops-target", value, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"error: invalid flops_target={float(value)!r} (from flag "
                     f"--flops-target): expected a fraction in (0, 1]{hint}"], lines
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="did you mean 0.58"):
        resolve_settings({}, env={"DREAMPRUNE_FLOPS_TARGET": "58"})
    assert resolve_settings({"flops_target": 1.0}, env={}).settings.prune.flops_target == 1.0


@pytest.mark.parametrize(("flag", "value", "hint"),
                         [("--task", "haze", "; did you mean 'dehaze'?"),
                          ("--granularity", "dpeth", "; did you mean 'depth'?"),
                          ("--task", "zzz", "")])
def test_a_near_miss_of_a_fixed_choice_names_it(runner, tmp_path: Path, flag: str, value: str,
                                                hint: str) -> None:
    command = (["synth", "--count", "1", "--size", "32"] if flag == "--task"
               else ["prune", "--model", "ffa", "--variant", "tiny"])
    result = runner.invoke(app, [*command, flag, value, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: invalid {flag[2:]}='{value}'")
    assert lines[0].endswith(hint or "'dehaze'"), lines
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_pipeline_limit_scores_the_first_pairs(runner, tmp_path: Path, pair_dirs) -> None:
    torch.manual_seed(0)
    weights = save_safetensors(tmp_path / "durn.safetensors",
                               build_model("durn_s", "tiny").state_dict(), "durn_s",
                               model_config("durn_s", "tiny"))
    inputs, targets = pair_dirs
    out = tmp_path / "run"
    result = runner.invoke(app, ["pipeline", "--weights", str(weights), "--steps", "2",
                                 "--flops-size", "64", "--out", str(out), "--allocator", "lamp",
                                 "--eval-input-dir", str(inputs), "--eval-target-dir",
                                 str(targets), "--limit", "2", "--device", "cpu", "--size",
                                 "32", "--batch-size", "2", "--json"])
    assert result.exit_code == 0, result.output
    first_two = [pair.name for pair in pair_folders(inputs, targets, limit=2)]
    assert len(list(inputs.iterdir())) == 3 and len(first_two) == 2
    report = json.loads((out / "report.json").read_text())
    assert report["eval_count"] == 2
    for role in ("teacher", "pruned", "distilled"):
        assert report[role]["count"] == 2
        assert [image["name"] for image in report[role]["per_image"]] == first_two
    assert json.loads((out / "run.json").read_text())["settings"]["limit"] == 2
