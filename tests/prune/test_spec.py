"""The pruning spec: resolved once from the settings and their sources, then only values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from dreamprune_cli.errors import UsageError
from dreamprune_cli.prune.spec import DEFAULT_CHANNEL_ALLOCATOR, PruneSpec, matches
from dreamprune_cli.settings import ResolvedSettings, resolve_prune_spec, resolve_settings


def _resolved(**values: object) -> ResolvedSettings:
    return resolve_settings({"device": "cpu", "threads": 1, **values}, env={})


def _from(resolved: ResolvedSettings, **sources: str) -> ResolvedSettings:
    """The same values, as if ``sources`` had set them (a preset, a resumed run's record)."""
    return ResolvedSettings(resolved.settings, {**resolved.sources, **sources})


def test_the_spec_holds_the_values_the_run_uses() -> None:
    spec = resolve_prune_spec(_resolved(flops_target=0.5, allocator="lamp", flops_size=64,
                                        exclude=["conv*"], min_keep=0.2, seed=3))
    assert spec == PruneSpec(granularity="unstructured", allocator="lamp", flops_target=0.5,
                             flops_size=64, exclude=("conv*",), min_keep=0.2, seed=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.allocator = "uniform"  # type: ignore[misc]
    with pytest.raises(ValueError, match="granularity"):
        PruneSpec(granularity="rows")


def test_the_reconstruction_calibration_is_its_own_setting() -> None:
    """The repair's images: 32 of 128 px by default, whatever ``depth_calibration_size`` (the
    depth drift's own size); count, size and ridge passed as given."""
    spec = resolve_prune_spec(_resolved(reconstruct=True, depth_calibration_size=192))
    assert (spec.reconstruct_count, spec.reconstruct_size, spec.reconstruct_ridge) == (
        32, 128, 0.1)
    spec = resolve_prune_spec(_resolved(reconstruct=True, granularity="depth",
                                        depth_calibration_size=192, reconstruct_count=5,
                                        reconstruct_size=96, reconstruct_ridge=0.01))
    assert (spec.reconstruct_count, spec.reconstruct_size, spec.calibration_size,
            spec.reconstruct_ridge) == (5, 96, 192, 0.01)


def test_channel_allocator_replaces_only_defaults() -> None:
    """An allocator without a channel form: its channel default when nobody asked for it."""
    for granularity in ("channel", "depth+channel"):
        def allocator(**values: object) -> str:
            return resolve_prune_spec(_resolved(granularity=granularity, **values)).allocator

        assert allocator(allocator="global") == "global"
        assert allocator() == "adaptive"  # the default has a channel form
        assert allocator(allocator="adaptive") == "adaptive"
        erk = _resolved(granularity=granularity, allocator="erk")
        for source in ("default", "preset presets/ffa.toml", "run runs/x/run.json"):
            assert resolve_prune_spec(_from(erk, allocator=source)).allocator \
                == DEFAULT_CHANNEL_ALLOCATOR == "lamp"
        with pytest.raises(UsageError) as info:
            resolve_prune_spec(erk)
        assert str(info.value) == ("allocator 'erk' (from flag --allocator) at granularity "
                                   "channel: expected one of uniform, global, lamp, adaptive")


def test_depth_chooses_by_drift_and_refuses_an_explicit_allocator() -> None:
    assert resolve_prune_spec(_resolved(granularity="depth")).allocator == "drift"
    explicit = _resolved(granularity="depth", allocator="lamp")
    assert resolve_prune_spec(_from(explicit, allocator="preset p.toml")).allocator == "drift"
    with pytest.raises(UsageError, match="depth pruning chooses blocks by measured drift"):
        resolve_prune_spec(explicit)


def test_channel_multiple_applies_only_at_channel_granularity() -> None:
    assert resolve_prune_spec(_resolved(granularity="channel",
                                        channel_multiple=16)).channel_multiple == 16
    assert resolve_prune_spec(_resolved(granularity="depth+channel",
                                        channel_multiple=8)).channel_multiple == 8
    assert resolve_prune_spec(_resolved()).channel_multiple == 1
    for granularity in ("unstructured", "depth"):
        explicit = _resolved(granularity=granularity, channel_multiple=16)
        with pytest.raises(UsageError) as info:
            resolve_prune_spec(explicit)
        assert str(info.value).startswith("channel_multiple 16 (from flag --channel-multiple) "
                                          "applies only at granularity channel")
        # from a preset or a resumed run's record it is not the user's contradiction: ignored
        for source in ("preset presets/ffa.toml", "run runs/x/run.json"):
            quiet = _from(explicit, channel_multiple=source)
            assert resolve_prune_spec(quiet).channel_multiple == 1


def test_latency_target_needs_structure_and_no_flops_target() -> None:
    assert resolve_prune_spec(_resolved(granularity="depth",
                                        latency_target=0.7)).latency_target == 0.7
    with pytest.raises(UsageError, match="needs a structured granularity"):
        resolve_prune_spec(_resolved(latency_target=0.7))
    with pytest.raises(UsageError, match="give one of them"):
        resolve_prune_spec(_resolved(granularity="channel", latency_target=0.7,
                                     flops_target=0.5))


def test_calibration_images_follow_the_granularity(tmp_path: Path) -> None:
    images = {"calibration": tmp_path, "calibration_size": 48, "depth_calibration_size": 96}
    adaptive = resolve_prune_spec(_resolved(**images))
    assert (adaptive.calibration_dir, adaptive.calibration_size) == (tmp_path, 48)
    assert not adaptive.calibration_ignored
    for granularity in ("depth", "depth+channel"):
        depth = resolve_prune_spec(_resolved(granularity=granularity, **images))
        assert (depth.calibration_dir, depth.calibration_size) == (tmp_path, 96)
    lamp = _resolved(allocator="lamp", **images)
    assert resolve_prune_spec(lamp).calibration_dir is None
    assert resolve_prune_spec(lamp).calibration_ignored  # the user's folder: prune warns
    assert not resolve_prune_spec(_from(lamp, calibration="preset p.toml")).calibration_ignored


def test_exclusion_globs_match_dotted_prefixes() -> None:
    assert matches("g1.gp.0.conv1", ["g1"])
    assert matches("g1.gp.0.conv1", ["g*.gp.0"])
    assert not matches("g10.conv", ["g1"])
