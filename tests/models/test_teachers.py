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
from tests.helpers import realdata



# model -> minimum PSNR gain (dB) over the degraded input on its default synthetic set.
GAIN_FLOORS = {"ffa": 4.5, "hinet": 4.5, "mprnet": 4.5}


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


# model -> (degraded, clean folder under ../shared/realdata, metric space, minimum mean gain in
# dB over the degraded input on 128x160 crops of the first six pairs). Measured with the
# shipped teachers (docs/teachers.md): hinet +4.3, mprnet +6.9, ffa +9.8; the first bundled
# derainers, trained on one rain synthesizer, made these crops worse (hinet -3.6) or barely
# better (mprnet +1.4).
REAL_FLOORS = {
    "hinet": ("KaneWANG0816+RGR/rain100L/test/small/rain",
              "KaneWANG0816+RGR/rain100L/test/small/norain", "y", 2.0),
    "mprnet": ("KaneWANG0816+RGR/rain100L/test/small/rain",
               "KaneWANG0816+RGR/rain100L/test/small/norain", "y", 2.0),
    "ffa": ("square-moon+haze/data/RESIDE-IN/test/hazy",
            "square-moon+haze/data/RESIDE-IN/test/GT", "rgb", 6.0),
}


@pytest.mark.parametrize("name", sorted(REAL_FLOORS))
def test_teacher_restores_real_images(runner, name: str, tmp_path) -> None:
    from PIL import Image

    degraded_dir, clean_dir, space, floor = REAL_FLOORS[name]
    degraded, clean = realdata(degraded_dir), realdata(clean_dir)
    for source, folder in ((degraded, "input"), (clean, "target")):
        (tmp_path / folder).mkdir()
    for path in sorted(degraded.glob("*.png"), key=lambda p: (len(p.name), p.name))[:6]:
        for source, folder in ((degraded, "input"), (clean, "target")):
            with Image.open(source / path.name) as image:
                image.convert("RGB").crop((0, 0, 160, 128)).save(tmp_path / folder / path.name)
    scores = {}
    for model in (name, "identity"):
        result = runner.invoke(app, ["--json", "evaluate", "--model", model, "--input-dir",
                                     str(tmp_path / "input"), "--target-dir",
                                     str(tmp_path / "target"), "--metric-space", space])
        assert result.exit_code == 0, result.output
        scores[model] = json.loads(result.stdout)
    assert scores[name]["count"] == 6
    assert scores[name]["psnr"] - scores["identity"]["psnr"] >= floor, scores
