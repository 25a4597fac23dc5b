"""bench/block_costs.py: per-block MACs (hand-counted), timing hooks, the predicted ratio."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "block_costs.py"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(SCRIPT.parent))  # it imports latency beside it
    spec = importlib.util.spec_from_file_location("block_costs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["block_costs"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 3, 1, bias=False)
        self.b1, self.b2 = Residual(), Residual()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b2(self.b1(self.head(x)))


def test_block_macs_are_hand_counted(bench) -> None:
    macs = bench.block_macs(Net(), ["b1", "b2"], (3, 8, 8))
    # a 3x3 convolution 3 -> 3 channels on 8x8: 3 * 3 * 9 * 64; the 1x1 head: 3 * 3 * 64
    assert macs == {"b1": 5184, "b2": 5184, bench.REST: 576}


def test_block_times_cover_every_block_and_the_rest(bench) -> None:
    times = bench.block_times(Net(), ["b1", "b2"], torch.rand(1, 3, 16, 16), repeats=3, warmup=1)
    assert set(times) == {"b1", "b2", bench.REST, "total"}
    assert all(value >= 0 for value in times.values())
    assert times["b1"] + times["b2"] <= times["total"] + 1e-9


def test_measured_ratio_of_a_student_without_blocks_is_below_one(bench) -> None:
    ratio = bench.measured_ratio(Net(), ["b1", "b2"], torch.rand(1, 3, 64, 64), repeats=3,
                                 warmup=1)
    assert 0 < ratio < 1


def test_predicted_ratio(bench) -> None:
    record = {"model": "net", "rows": [
        {"block": "b1", "mac_share": 0.2, "time_share": 0.1},
        {"block": "b2", "mac_share": 0.3, "time_share": 0.3},
        {"block": bench.REST, "mac_share": 0.5, "time_share": 0.6}]}
    prediction = bench.predicted_ratio(record, ["b1"])
    # the student keeps 0.8 of the MACs and 0.9 of the time: 0.9 / 0.8 = 1.125
    assert prediction["mac_ratio"] == pytest.approx(0.8)
    assert prediction["latency_ratio"] == pytest.approx(0.9)
    assert prediction["latency_per_mac_ratio"] == pytest.approx(1.125)
    with pytest.raises(SystemExit, match="not a depth block: b3"):
        bench.predicted_ratio(record, ["b3"])
