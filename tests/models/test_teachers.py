"""The bundled teachers: found, loaded by default, and better than the degraded input.

The PSNR floors are the gains measured by ``bench/train_teachers.py`` on the default
synthetic sets minus a margin (see ``docs/teachers.md``); the tests never retrain.
"""

from __future__ import annotations

import json
import logging

import pytest

from dreamprune_cli.cli import app
from dreamprune_cli.models.loading import load_model
from dreamprune_cli.models.registry import model_config
from dreamprune_cli.models.teachers import bundled_teacher_path, bundled_teachers



# model -> minimum PSNR gain (dB) over the degraded input on its default synthetic set.
GAIN_FLOORS = {"ffa": 4.5, "hinet": 6.5, "mprnet": 5.5}


def test_bundled_teachers_are_shipped() -> None:
    assert bundled_teachers() == sorted(GAIN_FLOORS)
    for name in GAIN_FLOORS:
        path = bundled_teacher_path(name)
        assert path is not None and path.suffix == ".safetensors"
        assert path.stat().st_size < 3_000_000  # a few MB in all
    for name in ("aganet", "identity", "", "../ffa", "pkg.mod:factory"):
        assert bundled_teacher_path(name) is None


@pytest.mark.parametrize("name", sorted(GAIN_FLOORS))
def test_load_model_uses_the_bundled_teacher(name: str, caplog: pytest.LogCaptureFixture
                                             ) -> None:
    # The CLI's logging setup stops propagation to the root logger: listen on ours directly.
    logger = logging.getLogger("dreamprune_cli")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="dreamprune_cli"):
            loaded = load_model(name)
    finally:
        logger.removeHandler(caplog.handler)
    assert loaded.weights == bundled_teacher_path(name)
    assert loaded.config == model_config(name, "tiny")
    messages = [r.getMessage() for r in caplog.records if "bundled" in r.getMessage()]
    # one line, seen once or twice depending on whether an earlier test configured the CLI
    assert set(messages) == {f"using the bundled {name} teacher ({bundled_teacher_path(name)})"}
    # the same file loads from its metadata alone
    again = load_model(None, weights=bundled_teacher_path(name))
    assert again.name == name and again.config == loaded.config


def test_use_bundled_false_builds_the_requested_variant() -> None:
    loaded = load_model("ffa", "tiny", use_bundled=False)
    assert loaded.weights is None and loaded.config == model_config("ffa", "tiny")


def _evaluate(runner, model: str) -> dict:
    result = runner.invoke(app, ["evaluate", "--model", model, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("name", sorted(GAIN_FLOORS))
def test_teacher_beats_the_degraded_input(runner, name: str) -> None:
    teacher = _evaluate(runner, name)
    assert teacher["weights"] == str(bundled_teacher_path(name))
    identity_args = ["evaluate", "--model", "identity", "--input-dir", teacher["input_dir"],
                     "--target-dir", teacher["target_dir"],
                     "--metric-space", teacher["metric_space"], "--json"]
    baseline = runner.invoke(app, identity_args)
    assert baseline.exit_code == 0, baseline.output
    base = json.loads(baseline.stdout)
    assert base["count"] == teacher["count"] == 12
    assert teacher["psnr"] - base["psnr"] >= GAIN_FLOORS[name], (teacher["psnr"], base["psnr"])
    assert teacher["ssim"] > base["ssim"]


def test_evaluate_without_folders_uses_the_task_set(runner) -> None:
    ffa = _evaluate(runner, "identity")
    assert "derain" in ffa["input_dir"]
