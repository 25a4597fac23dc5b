"""Pairing by stem with all problems reported up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dreamprune_cli.data.pairs import pair_folders
from dreamprune_cli.errors import UsageError
from tests.conftest import save_rgb


def test_pairs_by_stem_across_formats(tmp_path: Path) -> None:
    save_rgb(tmp_path / "in" / "a.jpg", np.zeros((8, 8, 3)))
    save_rgb(tmp_path / "tg" / "a.png", np.zeros((8, 8, 3)))
    save_rgb(tmp_path / "in" / "b.png", np.zeros((8, 8, 3)))
    save_rgb(tmp_path / "tg" / "b.png", np.zeros((8, 8, 3)))
    (tmp_path / "in" / "notes.txt").write_text("ignored")
    pairs = pair_folders(tmp_path / "in", tmp_path / "tg")
    assert [p.name for p in pairs] == ["a", "b"]
    assert pair_folders(tmp_path / "in", tmp_path / "tg", limit=1)[0].name == "a"


def test_unpaired_and_mismatched_listed_together(tmp_path: Path) -> None:
    save_rgb(tmp_path / "in" / "a.png", np.zeros((8, 8, 3)))
    save_rgb(tmp_path / "tg" / "a.png", np.zeros((8, 9, 3)))
    save_rgb(tmp_path / "in" / "only_in.png", np.zeros((8, 8, 3)))
    save_rgb(tmp_path / "tg" / "only_tg.png", np.zeros((8, 8, 3)))
    with pytest.raises(UsageError) as info:
        pair_folders(tmp_path / "in", tmp_path / "tg")
    message = str(info.value)
    assert "only_in.png" in message and "only_tg.png" in message
    assert "a (8x8 vs 8x9)" in message and "\n" not in message


def test_missing_and_empty_dirs(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--input-dir .*no such directory"):
        pair_folders(tmp_path / "nope", tmp_path)
    (tmp_path / "empty").mkdir()
    save_rgb(tmp_path / "in" / "a.png", np.zeros((8, 8, 3)))
    with pytest.raises(UsageError, match="--target-dir .*no images"):
        pair_folders(tmp_path / "in", tmp_path / "empty")
