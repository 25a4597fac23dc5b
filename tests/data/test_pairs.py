"""Pairing by stem with all problems reported up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dreamprune_cli.data.pairs import pair_folders, read_pair
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
    with pytest.raises(UsageError, match="input_dir .*no such directory"):
        pair_folders(tmp_path / "nope", tmp_path)
    (tmp_path / "empty").mkdir()
    save_rgb(tmp_path / "in" / "a.png", np.zeros((8, 8, 3)))
    with pytest.raises(UsageError, match="target_dir .*no images"):
        pair_folders(tmp_path / "in", tmp_path / "empty")


# --------------------------------------------------------------------------- pairing modes
def test_rain100_pairs_rain_with_norain(tmp_path: Path) -> None:
    for n in ("001", "002"):
        save_rgb(tmp_path / "rain" / f"rain-{n}.png", np.zeros((8, 8, 3)))
        save_rgb(tmp_path / "norain" / f"norain-{n}.png", np.zeros((8, 8, 3)))
    pairs = pair_folders(tmp_path / "rain", tmp_path / "norain", pairing="rain100")
    assert [(p.name, p.input_path.name, p.target_path.name) for p in pairs] == [
        ("rain-001", "rain-001.png", "norain-001.png"),
        ("rain-002", "rain-002.png", "norain-002.png")]
    with pytest.raises(UsageError, match="no target for rain-001.png.*see pairing"):
        pair_folders(tmp_path / "rain", tmp_path / "norain")  # stem pairing finds none


def test_rain100_still_pairs_shared_stems(tmp_path: Path) -> None:
    # The JORDER release used by ../shared/realdata: rainy and clean share names.
    save_rgb(tmp_path / "rain" / "norain-1.png", np.zeros((8, 8, 3)))
    save_rgb(tmp_path / "rain" / "rain-2.png", np.zeros((8, 8, 3)))
    save_rgb(tmp_path / "norain" / "norain-1.png", np.zeros((8, 8, 3)))
    save_rgb(tmp_path / "norain" / "norain-2.png", np.zeros((8, 8, 3)))
    pairs = pair_folders(tmp_path / "rain", tmp_path / "norain", pairing="rain100")
    assert [(p.name, p.target_path.name) for p in pairs] == [("norain-1", "norain-1.png"),
                                                             ("rain-2", "norain-2.png")]


def test_rain100_in_one_folder_as_prenet_lays_it_out(tmp_path: Path) -> None:
    folder = tmp_path / "Rain100L"
    for n in ("001", "002"):
        save_rgb(folder / f"rain-{n}.png", np.zeros((8, 8, 3)))
        save_rgb(folder / f"norain-{n}.png", np.zeros((8, 8, 3)))
    pairs = pair_folders(folder, tmp_path / "." / "Rain100L", pairing="rain100")
    assert [(p.input_path.name, p.target_path.name) for p in pairs] == [
        ("rain-001.png", "norain-001.png"), ("rain-002.png", "norain-002.png")]


def test_sots_pairs_several_hazy_with_one_clean_centre_cropped(tmp_path: Path) -> None:
    clean = np.random.default_rng(0).uniform(0, 1, (28, 30, 3))  # 10 px larger per side
    save_rgb(tmp_path / "clear" / "1400.png", clean)
    save_rgb(tmp_path / "clear" / "1401.png", clean)
    for name in ("1400_2", "1400_7", "1401_2"):
        save_rgb(tmp_path / "hazy" / f"{name}.png", clean[10:18, 10:20])
    pairs = pair_folders(tmp_path / "hazy", tmp_path / "clear", pairing="sots")
    assert [(p.name, p.target_path.name, p.target_crop) for p in pairs] == [
        ("1400_2", "1400.png", (10, 10, 8, 10)), ("1400_7", "1400.png", (10, 10, 8, 10)),
        ("1401_2", "1401.png", (10, 10, 8, 10))]
    hazy, target = read_pair(pairs[0])
    assert target.shape == hazy.shape == (3, 8, 10)
    assert torch.equal(hazy, target)  # the hazy file is the clean image's centre here


def test_sots_outdoor_names_and_shared_stems(tmp_path: Path) -> None:
    save_rgb(tmp_path / "hazy" / "0001_0.8_0.2.jpg", np.zeros((8, 8, 3)))
    save_rgb(tmp_path / "hazy" / "1400_2.png", np.zeros((8, 8, 3)))
    save_rgb(tmp_path / "gt" / "0001.png", np.zeros((8, 8, 3)))
    save_rgb(tmp_path / "gt" / "1400_2.png", np.zeros((8, 8, 3)))  # realdata's layout
    pairs = pair_folders(tmp_path / "hazy", tmp_path / "gt", pairing="sots")
    assert [(p.name, p.target_path.name, p.target_crop) for p in pairs] == [
        ("0001_0.8_0.2", "0001.png", None), ("1400_2", "1400_2.png", None)]


def test_sots_refuses_a_smaller_clean_image_and_unpaired_files(tmp_path: Path) -> None:
    save_rgb(tmp_path / "hazy" / "1400_2.png", np.zeros((12, 12, 3)))
    save_rgb(tmp_path / "hazy" / "1500_2.png", np.zeros((12, 12, 3)))
    save_rgb(tmp_path / "clear" / "1400.png", np.zeros((10, 14, 3)))
    save_rgb(tmp_path / "clear" / "1600.png", np.zeros((10, 14, 3)))
    with pytest.raises(UsageError) as info:
        pair_folders(tmp_path / "hazy", tmp_path / "clear", pairing="sots")
    message = str(info.value)
    assert "no target for 1500_2.png" in message and "no input for 1600.png" in message
    assert "1400_2 (12x12 vs 10x14)" in message and "--pairing" not in message


@pytest.mark.parametrize("pairing", ["stem", "sots"])
def test_the_same_folder_twice_is_refused(tmp_path: Path, pairing: str) -> None:
    save_rgb(tmp_path / "images" / "a.png", np.zeros((8, 8, 3)))
    (tmp_path / "other").mkdir()
    with pytest.raises(UsageError, match="are the same folder .*images"):
        pair_folders(tmp_path / "images", tmp_path / "other" / ".." / "images", pairing=pairing)


def test_unknown_pairing(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="pairing 'reside': expected one of stem, rain100"):
        pair_folders(tmp_path, tmp_path, pairing="reside")  # type: ignore[arg-type]


def test_real_sets_pair_with_their_modes() -> None:
    from tests.helpers import realdata

    rain100l = realdata("KaneWANG0816+RGR/rain100L/test/small")
    pairs = pair_folders(rain100l / "rain", rain100l / "norain", pairing="rain100")
    assert len(pairs) == 100 and pairs[0].target_path.name == pairs[0].input_path.name
    sots = realdata("square-moon+haze/data/RESIDE-IN/test")
    pairs = pair_folders(sots / "hazy", sots / "GT", pairing="sots")
    assert len(pairs) == 50 and {p.target_crop for p in pairs} == {None}
    assert {p.name.split("_")[1] for p in pairs} == {"2", "7"}
