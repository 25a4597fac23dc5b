"""The run context (:mod:`dreamprune_cli.runkit.context`): seeded generators, the evaluation
pairs' checks and the scoring protocol (the settings, else the model's registry entry)."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import torch

from dreamprune_cli.engine.tiling import Tiling
from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.registry import get_model_info
from dreamprune_cli.run_record import RunRecord
from dreamprune_cli.runkit.context import evaluation_pairs, generator, load_teacher, scoring
from dreamprune_cli.settings import resolve_settings

WARNING = "--tile-overlap is only used with --tile; ignored"


def _settings(**values: object):
    return resolve_settings({"device": "cpu", "threads": 1, **values}, env={})


def test_generator_is_the_only_seed() -> None:
    a, b = generator(3), generator(3)
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
    assert not torch.equal(torch.rand(4, generator=generator(4)),
                           torch.rand(4, generator=generator(3)))


def test_evaluation_folders_go_together(tmp_path: Path) -> None:
    teacher = load_teacher(_settings(model="identity").settings.common)
    with pytest.raises(UsageError, match="^input_dir and target_dir go together"):
        evaluation_pairs(teacher, _settings(model="identity"), tmp_path, None,
                         ("input_dir", "target_dir"))


def test_scoring_defaults_come_from_the_registry_entry() -> None:
    info = dataclasses.replace(get_model_info("identity"), metric_space="y",
                               ssim_variant="matlab", quantization="truncate", size_multiple=4)
    defaults = scoring(resolve_settings({}, env={}), info)
    assert defaults == {"metric_space": "y", "crop_border": 0, "ssim_variant": "matlab",
                        "quantization": "truncate", "tiling": None}
    given = scoring(resolve_settings({"ssim_variant": "basicsr", "quantize": "round",
                                       "tile": 30, "tile_overlap": 5}, env={}), info)
    assert given["ssim_variant"] == "basicsr" and given["quantization"] == "round"
    assert given["tiling"] == Tiling(32, 8, 4)


def test_overlap_without_tile_is_flagged(caplog: pytest.LogCaptureFixture) -> None:
    info = get_model_info("identity")
    with caplog.at_level("WARNING", logger="dreamprune_cli"):
        assert scoring(resolve_settings({"tile_overlap": 8}, env={}), info)["tiling"] is None
    assert "--tile-overlap is only used with --tile" in caplog.text


def _warnings(caplog: pytest.LogCaptureFixture, resolved) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        scoring(resolved, get_model_info("ffa"))
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_tile_overlap_warning_only_when_the_user_set_it(tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    record = RunRecord(tmp_path / "run.json", "pipeline", {"tile_overlap": 32, "tile": None})
    resumed = resolve_settings({}, env={}, run_record=record)
    assert resumed.sources["tile_overlap"].startswith("run ")
    assert not resumed.user_set("tile_overlap")
    assert _warnings(caplog, resumed) == []
    assert _warnings(caplog, resolve_settings({}, env={})) == []  # the default
    config = tmp_path / "c.toml"
    config.write_text("[evaluate]\ntile_overlap = 8\n")
    for chosen in (resolve_settings({"tile_overlap": 16}, env={}),
                   resolve_settings({}, env={"DREAMPRUNE_TILE_OVERLAP": "16"}),
                   resolve_settings({}, config=config, env={}),
                   resolve_settings({"tile_overlap": 16}, env={}, run_record=record)):
        assert _warnings(caplog, chosen) == [WARNING]
