"""bench/real_table1.py's bookkeeping: row keys, dreaming variants and the paired gap."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "real_table1.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("real_table1", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_table1"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_variant_values_are_typed_and_labelled_in_a_stable_order(bench) -> None:
    variant = bench.parse_variant(["round_steps=10", "noise_lr=0.2", "representation=gap"])
    assert variant == {"round_steps": 10, "noise_lr": 0.2, "representation": "gap"}
    assert bench.variant_label(variant) == "noise_lr=0.2,representation=gap,round_steps=10"
    assert bench.parse_variant(None) == {}


@pytest.mark.parametrize("item", ["noise=0.2", "noise_lr", "noise_lr=", "round_steps=ten"])
def test_a_bad_variant_is_refused(bench, item: str) -> None:
    with pytest.raises((SystemExit, ValueError)):
        bench.parse_variant([item])


def test_rows_written_before_variants_keep_their_key(bench) -> None:
    old = {"teacher": "prenet", "target": 0.58, "row": "dream_distill/adaptive", "steps": 200}
    new = dict(old, variant="lambda_orth=0.5")
    assert bench._key(old) == ("prenet", 0.58, "dream_distill/adaptive", 200, "")
    assert bench._key(new) != bench._key(old)


def test_gap_is_the_mean_paired_difference_with_its_standard_error(bench) -> None:
    teacher = {"per_image": [["a", 30.0, 0.9], ["b", 32.0, 0.9], ["c", 34.0, 0.9]]}
    row = {"per_image": [["c", 33.0, 0.9], ["a", 29.0, 0.9], ["b", 32.0, 0.9]]}
    mean, error = bench.gap(row, teacher)  # differences -1, 0, -1 (paired by name)
    assert mean == pytest.approx(-2 / 3)
    assert error == pytest.approx(math.sqrt((1 / 9 + 4 / 9 + 1 / 9) / 2 / 3))


def test_channel_rows_run_the_best_channel_allocator_first_without_repeats(bench) -> None:
    rows = bench.planned_rows([0.58], {0.58: "lamp"}, channel=True)
    assert rows[:3] == [(None, "teacher"), (0.58, "channel_prune/lamp"),
                        (0.58, "channel_dream_distill/lamp")]
    names = [name for _, name in rows]
    assert len(names) == len(set(names))
    assert {f"channel_prune/{a}" for a in bench.CHANNEL_ALLOCATORS} <= set(names)
    assert names[-2:] == ["channel_noise_distill/lamp", "channel_synth_distill/lamp"]
    assert not any(name.startswith(("prune/", "dream_distill/")) for name in names)


def test_channel_rows_sort_after_the_unstructured_rows_of_their_target(bench) -> None:
    rows = [{"row": "channel_prune/lamp", "target": 0.58, "steps": 0},
            {"row": "dream_distill/lamp", "target": 0.58, "steps": 200},
            {"row": "prune/lamp", "target": 0.58, "steps": 0}]
    ordered = [row["row"] for row in sorted(rows, key=bench._table_order)]
    assert ordered == ["prune/lamp", "dream_distill/lamp", "channel_prune/lamp"]
