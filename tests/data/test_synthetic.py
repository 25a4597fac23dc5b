"""``dreamprune_cli.data.synthetic``: degraded batches and pair sets: determinism, errors, cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from dreamprune_cli.data.synthetic import (TEST_SET_COUNT, TEST_SET_SIZE, check_task,
                                           make_degraded_batch, synthetic_test_set,
                                           write_synthetic_set)
from dreamprune_cli.errors import UsageError
from tests.helpers import folder_bytes as _files


def test_image_i_depends_only_on_seed_and_index(tmp_path: Path) -> None:
    write_synthetic_set("dehaze", 1, 24, 3, tmp_path / "one")
    write_synthetic_set("dehaze", 3, 24, 3, tmp_path / "three")
    assert _files(tmp_path / "one")["input/0000.png"] == \
        _files(tmp_path / "three")["input/0000.png"]


@pytest.mark.parametrize("task", ["derain", "raindrop", "dehaze"])
def test_make_degraded_batch(task: str) -> None:
    degraded, clean = make_degraded_batch(task, 2, 32, seed=4)
    assert degraded.shape == clean.shape == (2, 3, 32, 32)
    assert 0 <= degraded.min() and degraded.max() <= 1
    assert (degraded - clean).abs().max() > 0.05
    again, _ = make_degraded_batch(task, 2, 32, seed=4)
    assert torch.equal(degraded, again)


def test_make_degraded_batch_rejects_unknown_task() -> None:
    with pytest.raises(UsageError, match="derain, raindrop, dehaze"):
        make_degraded_batch("snow", 2, 32, seed=0)


def test_synthetic_test_set_is_cached(tmp_path: Path) -> None:
    inputs, targets = synthetic_test_set("dehaze", count=2, size=16, seed=1, root=tmp_path)
    assert sorted(p.name for p in inputs.iterdir()) == ["0000.png", "0001.png"]
    assert targets.parent == inputs.parent and (inputs.parent / "manifest.json").is_file()
    stamp = (inputs / "0000.png").stat().st_mtime_ns
    again = synthetic_test_set("dehaze", count=2, size=16, seed=1, root=tmp_path)
    assert again == (inputs, targets) and (inputs / "0000.png").stat().st_mtime_ns == stamp
    # identity models are scored on the derain set; no temporary folders are left behind
    derain = synthetic_test_set("identity", count=2, size=16, seed=1, root=tmp_path)
    assert "derain" in derain[0].parent.name
    assert not [p for p in inputs.parent.parent.iterdir() if p.name.startswith(".")]


def test_synthetic_test_set_defaults_use_the_cache_env(synthetic_cache: Path) -> None:
    inputs, _ = synthetic_test_set("derain")
    assert synthetic_cache in inputs.parents
    assert len(list(inputs.iterdir())) == TEST_SET_COUNT
    with Image.open(next(inputs.iterdir())) as image:
        assert image.size == (TEST_SET_SIZE, TEST_SET_SIZE)


def test_check_task_maps_identity_and_names_the_tasks() -> None:
    assert [check_task(t) for t in ("derain", "raindrop", "dehaze", "identity")] == \
        ["derain", "raindrop", "dehaze", "derain"]
    with pytest.raises(UsageError, match=r"^task 'snow': expected one of derain, raindrop, "
                                         r"dehaze$"):
        check_task("snow")
