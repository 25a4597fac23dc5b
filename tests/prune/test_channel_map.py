"""``dreamprune_cli.prune.channel_map``: what Torch-Pruning removed, recorded once and read
back. (Malformed records in a file: ``tests/models/test_channel_map.py``.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.channel_map import (KEPT_KEY, LayerChannels, identity_map,
                                              map_problems)
from dreamprune_cli.models.loading import LoadedModel, load_model, save_model
from dreamprune_cli.models.registry import build_model, get_model_info, model_config
from dreamprune_cli.prune.channel_map import kept_channel_map, teacher_channels
from dreamprune_cli.prune.channel.plan import prune_channels
from dreamprune_cli.prune.channel.allocate import channel_groups, trace_input
from dreamprune_cli.prune.result import write_prune_outputs
from dreamprune_cli.prune.student import load_student


def _tiny(name: str, **overrides: object) -> LoadedModel:
    torch.manual_seed(0)
    return LoadedModel(name=name, info=get_model_info(name),
                       network=build_model(name, "tiny", **overrides).eval(),
                       config=model_config(name, "tiny", **overrides), weights=None)


def _teacher_slice(module: nn.Module, kept: LayerChannels) -> torch.Tensor:
    """The teacher's weight at the kept channels, laid out as the student's."""
    out, inputs = list(kept.outputs), list(kept.inputs)
    weight = module.weight
    if isinstance(module, nn.Linear):
        return weight[out][:, inputs]
    if module.transposed:  # (in, out / groups, k...)
        return weight[inputs] if module.groups > 1 else weight[inputs][:, out]
    return weight[out] if module.groups > 1 else weight[out][:, inputs]


@pytest.mark.parametrize("name, overrides", [("prenet", {"channels": 8}), ("ffa", {}),
                                             ("gcanet", {}), ("durn_s", {})])
def test_map_names_the_teacher_channels_each_layer_kept(name: str, overrides: dict) -> None:
    """Every student weight is the teacher's weight at the mapped indices: the map is the
    removal Torch-Pruning's functions performed, not a guess."""
    teacher = _tiny(name, **overrides)
    size = max(32, 2 * teacher.info.size_multiple)
    student = prune_channels(teacher, 0.58, "lamp", flops_size=size).student
    kept = teacher_channels(student)
    assert map_problems(student.network, kept) == []
    teacher_layers = dict(teacher.network.named_modules(remove_duplicate=False))
    student_layers = dict(student.network.named_modules(remove_duplicate=False))
    thinner = 0
    for layer, channels in kept.items():
        want = _teacher_slice(teacher_layers[layer], channels)
        assert torch.equal(want, student_layers[layer].weight), layer
        thinner += len(channels.outputs) < teacher_layers[layer].weight.shape[0]
    assert thinner > 0


def test_map_follows_the_groups_dropped_channels() -> None:
    """conv1's least important channels (by the groups' own order) are the ones missing."""
    torch.manual_seed(0)
    network = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(8, 3, 3, padding=1)).eval()
    groups, _ = channel_groups(network, trace_input(1))
    group = next(g for g in groups if g.root == "0")
    kept = [g.channels - 3 if g is group else g.channels for g in groups]
    channel_map = kept_channel_map(network, groups, kept)
    dropped = set(group.order[:3])
    assert channel_map["0"].outputs == tuple(i for i in range(8) if i not in dropped)
    assert channel_map["2"].inputs == channel_map["0"].outputs
    assert channel_map["0"].inputs == (0, 1, 2) and channel_map["2"].outputs == (0, 1, 2)


def test_map_round_trips_through_the_student_file(tmp_path: Path) -> None:
    result = prune_channels(_tiny("prenet", channels=8), 0.58, "lamp", flops_size=32)
    kept = result.student.kept_channels
    assert kept is not None
    paths = write_prune_outputs(result, tmp_path / "out")
    with safe_open(str(paths["student"]), framework="pt") as handle:
        record = json.loads(handle.metadata()[KEPT_KEY])
    assert record["conv_g.0"]["out"] == list(kept["conv_g.0"].outputs)
    assert load_model(None, weights=paths["student"]).kept_channels == kept
    loaded = load_student(paths["student"], "prenet")
    assert loaded.kept_channels == kept
    again = load_model(None, weights=save_model(loaded, tmp_path / "export.safetensors"))
    assert again.kept_channels == kept  # export carries it


def test_files_without_the_map_load_as_before(tmp_path: Path) -> None:
    result = prune_channels(_tiny("prenet", channels=8), 0.58, "lamp", flops_size=32)
    result.student.kept_channels = None  # as a student written before the map existed
    path = write_prune_outputs(result, tmp_path / "old")["student"]
    with safe_open(str(path), framework="pt") as handle:
        assert KEPT_KEY not in handle.metadata()
    old = load_model(None, weights=path)
    assert old.granularity == "channel" and old.kept_channels is None
    with pytest.raises(UsageError, match="prune the teacher again"):
        teacher_channels(old)
    teacher = load_model("prenet", variant="tiny", use_bundled=False)
    assert teacher.kept_channels is None
    assert teacher_channels(teacher) == identity_map(teacher.network)


def test_depth_students_record_the_identity(tmp_path: Path) -> None:
    from dreamprune_cli.prune.depth.plan import prune_depth

    teacher = _tiny("prenet")
    result = prune_depth(teacher, 0.67, flops_size=32, calibration_size=32)
    assert result.student.kept_channels == identity_map(result.student.network)
    path = write_prune_outputs(result, tmp_path / "depth")["student"]
    assert load_model(None, weights=path).kept_channels == identity_map(result.student.network)


