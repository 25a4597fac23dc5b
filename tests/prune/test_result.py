"""``dreamprune_cli.prune.result``: layer reports by hand, the result's ratio and JSON view."""

from __future__ import annotations

import pytest
from torch import nn

from dreamprune_cli.flops import count_costs
from dreamprune_cli.prune.result import (CHANNEL_MULTIPLE_KEY, LayerReport, PruneResult,
                                         channel_multiple_metadata, structured_layers)
from tests.helpers import tiny_loaded


def _pair(width: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(width, 3, 3, padding=1))


def test_structured_layers_by_hand() -> None:
    """At 8x8 (64 pixels), MACs per pixel are weights plus bias: 8*3*9 + 8 = 224 and
    3*8*9 + 3 = 219 for the teacher, 4*3*9 + 4 = 112 and 3*4*9 + 3 = 111 for a student
    that kept 4 of the 8 channels."""
    teacher, student = _pair(8), _pair(4)
    layers = structured_layers(teacher, student, count_costs(teacher, (3, 8, 8)),
                               count_costs(student, (3, 8, 8)))
    assert [(r.name, r.kind, r.shape, r.pruned) for r in layers] == [
        ("0", "Conv2d", [4, 3, 3, 3], True), ("2", "Conv2d", [3, 4, 3, 3], True)]
    assert [(r.params, r.params_kept, r.keep_ratio) for r in layers] == [(216, 108, 0.5),
                                                                       (216, 108, 0.5)]
    assert [(r.macs_dense, r.macs_kept, r.positions) for r in layers] == [
        (224 * 64, 112 * 64, 64), (219 * 64, 111 * 64, 64)]
    same = structured_layers(teacher, teacher, count_costs(teacher, (3, 8, 8)),
                             count_costs(teacher, (3, 8, 8)))
    assert not any(r.pruned for r in same)


def test_layer_report_json() -> None:
    report = LayerReport(name="conv", kind="Conv2d", shape=[4, 3, 3, 3], pruned=True,
                         params=108, params_kept=27, macs_dense=2000, macs_kept=600,
                         positions=16)
    data = report.as_dict()
    assert data["keep_ratio"] == 0.25
    assert (data["weight_macs_dense"], data["weight_macs_kept"]) == (108 * 16, 27 * 16)
    empty = LayerReport("x", "Linear", [], False, 0, 0, 0, 0, 0)
    assert empty.keep_ratio == 1.0


def test_result_ratio_granularity_and_json() -> None:
    student = tiny_loaded("ffa", blocks=1)
    layer = LayerReport("pre.0", "Conv2d", [4, 3, 3, 3], False, 108, 108, 10, 10, 1)
    result = PruneResult(student=student, allocator="lamp", flops_target=0.5, flops_size=32,
                         scalar_name="r", scalar=0.3, macs_dense=1000, macs_before=1000,
                         macs_after=480, params_dense=50, params_before=50, params_after=30,
                         layers=[layer], exclude=["pre.0"], seconds=0.1,
                         metadata=channel_multiple_metadata(8))
    assert result.macs_ratio == 0.48 and result.granularity == "unstructured"
    data = result.as_dict()
    assert data["model"] == "ffa" and data["input_size"] == [3, 32, 32]
    assert data["scalar"] == {"name": "r", "value": 0.3} and data["macs_ratio"] == 0.48
    assert data["pruned_layers"] == 0 and data["excluded_layers"] == ["pre.0"]
    assert data["layers"] == [layer.as_dict()] and "drift" not in data
    assert "layers" not in result.as_dict(layers=False)
    assert result.metadata == {CHANNEL_MULTIPLE_KEY: "8"}
    assert CHANNEL_MULTIPLE_KEY == "dreamprune.prune.channel_multiple"
    with pytest.raises(AttributeError):  # read from the student, never set apart from it
        result.granularity = "channel"
