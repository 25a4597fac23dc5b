"""Degradation synthesizers: documented formulas, parameter handling, orientation."""

from __future__ import annotations

import json
import math

import pytest
import torch

from dreamprune_cli.data.clean import procedural_images
from dreamprune_cli.data.degrade import (haze, kornia_rain, rain_streaks, raindrops,
                                         random_depth, scene_depth, transmission)



@pytest.fixture(scope="module")
def scenes() -> torch.Tensor:
    return procedural_images(3, 48, seed=2)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- haze
def test_haze_with_zero_beta_is_identity(scenes: torch.Tensor) -> None:
    out, params = haze(scenes, _gen(), beta=0.0)
    assert torch.equal(out, scenes)
    assert params["t_mean"] == [1.0, 1.0, 1.0]


def test_haze_matches_the_scattering_model(scenes: torch.Tensor) -> None:
    depth = torch.ones(3, 1, 48, 48)
    out, params = haze(scenes, _gen(), beta=math.log(2.0), airlight=0.8, depth=depth)
    # t = exp(-ln 2 * 1) = 0.5, A = 0.8 in every channel (no tint when A is given).
    torch.testing.assert_close(out, 0.5 * scenes + 0.4, atol=1e-6, rtol=0)
    assert params["airlight"][0] == [0.8, 0.8, 0.8] and params["t_mean"][0] == 0.5


def test_transmission_in_unit_interval_and_monotone() -> None:
    depth, near = random_depth(4, 32, 40, _gen())
    assert depth.shape == (4, 1, 32, 40)
    assert torch.allclose(depth.amax(dim=(1, 2, 3)), torch.ones(4))
    torch.testing.assert_close(depth.amin(dim=(1, 2, 3)), near)
    t = transmission(depth[:1].expand(4, 1, 32, 40), torch.tensor([0.0, 0.5, 1.5, 3.0]))
    assert (t > 0).all() and (t <= 1).all()
    assert torch.equal(t[0], torch.ones_like(t[0]))
    assert (t[3] < t[2]).all() and (t[2] < t[1]).all()
    assert torch.allclose(transmission(torch.tensor(2.0).view(1, 1, 1, 1), 0.25),
                          torch.tensor(math.exp(-0.5)))


def test_haze_lowers_contrast_and_draws_documented_ranges(scenes: torch.Tensor) -> None:
    out, params = haze(scenes, _gen(1))
    assert out.std(dim=(2, 3)).mean() < scenes.std(dim=(2, 3)).mean()
    assert all(0.3 <= b <= 2.5 for b in params["beta"])
    assert all(0.0 <= n <= 0.4 for n in params["near"])
    json.dumps(params)  # manifest-ready


def test_haze_rejects_bad_input(scenes: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="beta"):
        haze(scenes, _gen(), beta=-1.0)
    with pytest.raises(ValueError, match="depth"):
        haze(scenes, _gen(), depth=torch.ones(3, 1, 8, 8))
    with pytest.raises(ValueError, match="one per image"):
        haze(scenes, _gen(), beta=[0.5, 1.0])
    with pytest.raises(ValueError, match="RGB"):
        haze(scenes[:, :1], _gen())


# ----------------------------------------------------------------------------- rain
def test_rain_without_streaks_or_veil_is_identity(scenes: torch.Tensor) -> None:
    out, _ = rain_streaks(scenes, _gen(), density=0.0, veil=0.0)
    torch.testing.assert_close(out, scenes, atol=1e-6, rtol=0)  # screen blend, float exact-ish


def test_rain_only_brightens_without_veil(scenes: torch.Tensor) -> None:
    out, params = rain_streaks(scenes, _gen(), veil=0.0)
    assert (out >= scenes - 1e-6).all() and (out - scenes).abs().max() > 0.1
    assert set(params) == {"density", "length", "angle", "width", "brightness", "veil",
                           "layers", "airlight"}
    assert all(len(v) == 3 for v in params.values())
    json.dumps(params)


def test_rain_is_deterministic_per_generator(scenes: torch.Tensor) -> None:
    a, pa = rain_streaks(scenes, _gen(7))
    b, pb = rain_streaks(scenes, _gen(7))
    assert torch.equal(a, b) and pa == pb


def _lean(streaks: torch.Tensor) -> float:
    """Covariance of x and height (y up) over streak pixels: > 0 leans right."""
    weight = streaks[0, 0]
    ys, xs = torch.meshgrid(torch.arange(weight.shape[0], dtype=torch.float64),
                            torch.arange(weight.shape[1], dtype=torch.float64), indexing="ij")
    w = weight.double() / weight.sum()
    mx, my = (w * xs).sum(), (w * -ys).sum()
    return float((w * (xs - mx) * (-ys - my)).sum())


def test_streak_angle_sets_the_orientation() -> None:
    black = torch.zeros(1, 3, 64, 64)
    common = dict(density=0.0005, length=31, width=0.8, brightness=1.0, veil=0.0, layers=1)
    vertical, _ = rain_streaks(black, _gen(3), angle=0.0, **common)
    right, _ = rain_streaks(black, _gen(3), angle=30.0, **common)
    left, _ = rain_streaks(black, _gen(3), angle=-30.0, **common)
    # Vertical streaks: intensity changes across columns, not along them.
    dx = (vertical[..., :, 1:] - vertical[..., :, :-1]).abs().sum()
    dy = (vertical[..., 1:, :] - vertical[..., :-1, :]).abs().sum()
    assert dx > 3 * dy
    assert _lean(right) > 0 > _lean(left)


def test_longer_streaks_cover_more(scenes: torch.Tensor) -> None:
    black = torch.zeros(1, 3, 64, 64)
    common = dict(density=0.002, width=0.8, brightness=1.0, veil=0.0, layers=1, angle=0.0)
    short, _ = rain_streaks(black, _gen(4), length=5, **common)
    long_, _ = rain_streaks(black, _gen(4), length=25, **common)
    assert (long_ > 0.05).float().mean() > 2 * (short > 0.05).float().mean()


def test_rain_veil_moves_towards_airlight() -> None:
    grey = torch.full((1, 3, 16, 16), 0.2)
    out, params = rain_streaks(grey, _gen(), density=0.0, veil=0.5)
    torch.testing.assert_close(out, 0.5 * grey + 0.5 * params["airlight"][0], atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- drops
def test_no_drops_is_identity(scenes: torch.Tensor) -> None:
    out, params = raindrops(scenes, _gen(), drops=0.0)
    assert torch.equal(out, scenes) and params["count"] == [0, 0, 0]


def test_drops_change_local_regions_deterministically(scenes: torch.Tensor) -> None:
    out, params = raindrops(scenes, _gen(5), drops=2.0, radius=8.0)
    again, _ = raindrops(scenes, _gen(5), drops=2.0, radius=8.0)
    assert torch.equal(out, again)
    assert params["count"] == [round(2.0 * 48 * 48 / 1000)] * 3
    changed = ((out - scenes).abs().amax(dim=1) > 2 / 255).float().mean()
    assert 0.02 < changed < 0.8  # drops cover part of the image, not all of it
    assert out.min() >= 0 and out.max() <= 1
    json.dumps(params)


def test_drops_reject_bad_radius(scenes: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="radius"):
        raindrops(scenes, _gen(), radius=1.0)


# ----------------------------------------------------------------------------- kornia rain
def test_kornia_rain_draws_lines_of_the_given_opacity_on_black() -> None:
    black = torch.zeros(1, 3, 64, 64)
    out, params = kornia_rain(black, _gen(5), drops=2.0, length=20, slant=0.0,
                              brightness=0.5, softness=0.0)
    values = set(torch.unique(out).tolist())
    assert values == {0.0, 0.5}  # screen blend on black: the streak layer itself
    lit = (out[0, 0] > 0).float()
    drops = round(2.0 * 64 * 64 / 1000)  # 8 drops of 20 px at most
    assert 20 <= lit.sum() <= drops * 20
    # Vertical lines: intensity changes across columns, hardly along them.
    dx = (lit[:, 1:] - lit[:, :-1]).abs().sum()
    dy = (lit[1:, :] - lit[:-1, :]).abs().sum()
    assert dx > 3 * dy
    assert params["length"] == [20.0] and params["brightness"] == [0.5]


def test_kornia_rain_only_brightens_and_is_fixed_by_the_generator(scenes: torch.Tensor) -> None:
    state = torch.get_rng_state()
    first, params = kornia_rain(scenes, _gen(6))
    assert torch.equal(torch.get_rng_state(), state)  # kornia's draws leave ours untouched
    second, _ = kornia_rain(scenes, _gen(6))
    assert torch.equal(first, second)
    assert (first >= scenes - 1e-6).all() and not torch.equal(first, scenes)
    assert set(params) == {"drops", "length", "slant", "brightness", "softness"}
    assert all(len(values) == 3 for values in params.values())


def test_kornia_rain_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 8 x 8"):
        kornia_rain(torch.zeros(1, 3, 6, 32))
    with pytest.raises(ValueError, match="length must be >= 1"):
        kornia_rain(torch.zeros(1, 3, 32, 32), length=0.0)


# ----------------------------------------------------------------------------- scene depth
def test_scene_depth_steps_at_object_edges() -> None:
    image = torch.zeros(1, 3, 32, 32)
    image[..., 16:] = 1.0  # two objects: dark left half, bright right half
    depth, near = scene_depth(image, _gen(7), near=0.2, scene_weight=1.0)
    assert near.tolist() == pytest.approx([0.2])
    left, right = depth[0, 0, :, :16], depth[0, 0, :, 16:]
    # All of the depth comes from the scene: constant on each object, the full range between.
    assert torch.allclose(left, left[0, 0]) and torch.allclose(right, right[0, 0])
    assert sorted([float(left[0, 0]), float(right[0, 0])]) == pytest.approx([0.2, 1.0])


def test_scene_depth_range_and_haze(scenes: torch.Tensor) -> None:
    depth, near = scene_depth(scenes, _gen(8))
    assert depth.shape == (3, 1, 48, 48)
    for i in range(3):
        assert float(depth[i].min()) == pytest.approx(float(near[i]), abs=1e-5)
        assert float(depth[i].max()) == pytest.approx(1.0, abs=1e-5)
    hazy, params = haze(scenes, _gen(9), depth=depth)
    assert hazy.shape == scenes.shape and len(params["t_mean"]) == 3
