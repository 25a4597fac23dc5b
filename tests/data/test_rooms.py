"""Procedural indoor rooms: shapes, ranges, determinism, the pinhole floor law, haze along
the room's depth, the ``scenes`` setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dreamprune_cli.cli import app
from dreamprune_cli.data.clean import (CleanSource, DepthSource, ProceduralSource,
                                       make_clean_source)
from dreamprune_cli.data.rooms import RoomSource, room_images
from dreamprune_cli.data.synthetic import make_degraded_batch, sample_degraded
from dreamprune_cli.errors import UsageError


@pytest.mark.parametrize("size", [8, 33, 64])
def test_rooms_shape_range_dtype(size: int) -> None:
    images, depth = room_images(3, size, seed=1)
    assert images.shape == (3, 3, size, size) and images.dtype == torch.float32
    assert depth.shape == (3, 1, size, size) and depth.dtype == torch.float32
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert depth.min() > 0.0 and depth.max() <= 1.0


def test_rooms_are_deterministic_per_seed_and_vary() -> None:
    a, b = room_images(4, 32, seed=5), room_images(4, 32, seed=5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], room_images(4, 32, seed=6)[0])
    assert (a[0].std(dim=(1, 2, 3)) > 0.02).all()


def test_empty_room_floor_has_inverse_depth_linear_in_the_row() -> None:
    """Pinhole camera, floor at height h below the eye: image row y - v_y = f h / z, so the
    inverse depth 1/z is linear in the row (here: exactly, before the 2x average-down)."""
    source = RoomSource(furniture=0, pictures=0)
    _, depth = source.sample_with_depth(4, 96, torch.Generator().manual_seed(0))
    rows = torch.arange(86, 96, dtype=torch.float64)  # the bottom rows: floor in every room
    for d in depth[:, 0, 86:96, 48].double():
        inverse = 1.0 / d
        slope, intercept = torch.linalg.lstsq(
            torch.stack([rows, torch.ones_like(rows)], 1), inverse.unsqueeze(1)).solution[:, 0]
        assert slope > 0  # nearer (smaller depth) further down the image
        fit = slope * rows + intercept
        assert (fit - inverse).abs().max() < 1e-3 * inverse.abs().max()
    # the farthest point of an empty room is its back wall, depth 1
    assert torch.allclose(depth.amax(dim=(1, 2, 3)), torch.ones(4))


def test_haze_follows_the_rooms_depth() -> None:
    """``sample_degraded`` on a depth source: I = J t + A (1 - t), t = exp(-beta d), with d
    the room's own depth (recomputed here from the returned parameters)."""
    source = RoomSource()
    degraded, clean, params = sample_degraded("dehaze", source, 2, 32,
                                              torch.Generator().manual_seed(7))
    clean2, depth = source.sample_with_depth(2, 32, torch.Generator().manual_seed(7))
    assert torch.equal(clean, clean2)
    beta = torch.tensor(params["beta"]).view(2, 1, 1, 1)
    light = torch.tensor(params["airlight"]).view(2, 3, 1, 1)
    t = torch.exp(-beta * depth)
    expected = (clean * t + light * (1 - t)).clamp(0, 1)
    torch.testing.assert_close(degraded, expected, atol=1e-4, rtol=0)  # params: 4 digits


def test_other_tasks_and_leaves_ignore_depth() -> None:
    rain, clean = make_degraded_batch("derain", 2, 32, 3, RoomSource())
    assert rain.shape == clean.shape == (2, 3, 32, 32)
    leaves = make_degraded_batch("dehaze", 2, 32, 3)
    assert torch.equal(leaves[0], make_degraded_batch("dehaze", 2, 32, 3, ProceduralSource())[0])


def test_make_clean_source_scenes() -> None:
    rooms = make_clean_source(None, "rooms")
    assert isinstance(rooms, RoomSource) and isinstance(rooms, CleanSource)
    assert isinstance(rooms, DepthSource)
    assert not isinstance(make_clean_source(), DepthSource)
    with pytest.raises(UsageError, match=r"scenes 'hall': expected one of leaves, rooms"):
        make_clean_source(None, "hall")
    with pytest.raises(ValueError):
        RoomSource(furniture=-1)


def test_synth_rooms_cli(runner, tmp_path: Path) -> None:
    out = tmp_path / "rooms"
    result = runner.invoke(app, ["synth", "--task", "dehaze", "--scenes", "rooms", "--count",
                                 "2", "--size", "24", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["clean"] == "procedural rooms"
    assert len(list((out / "input").glob("*.png"))) == 2
    bad = runner.invoke(app, ["synth", "--task", "dehaze", "--scenes", "hall", "--count", "1",
                              "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2
    assert "scenes" in bad.output
