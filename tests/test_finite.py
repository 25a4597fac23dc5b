"""``dreamprune_cli.finite``: non-finite entries found by dotted name, and described."""

from __future__ import annotations

import torch

from dreamprune_cli.finite import describe_nonfinite, nonfinite_entries

NAN, INF = float("nan"), float("inf")


def test_nonfinite_entries_are_named_through_any_nesting() -> None:
    state = {"model": {"conv.weight": torch.tensor([1.0, NAN]), "conv.bias": torch.zeros(2)},
             "optimizer": {"state": [{"exp_avg": torch.tensor([INF])},
                                     (torch.ones(1), torch.tensor([-INF]))]},
             "step": torch.tensor(7),  # integer tensors hold no NaN
             "note": "ignored", "lr": float("nan")}  # not a tensor: not checked
    assert nonfinite_entries(state) == ["model.conv.weight", "optimizer.state[0].exp_avg",
                                        "optimizer.state[1][1]"]
    assert nonfinite_entries(torch.tensor([NAN])) == ["tensor"]
    assert nonfinite_entries(torch.tensor([1.0]), prefix="x") == []
    assert nonfinite_entries(torch.tensor([1 + 0j, complex(NAN, 0)])) == ["tensor"]


def test_describe_counts_nan_and_inf() -> None:
    assert describe_nonfinite(torch.tensor([NAN, NAN, INF, 1.0])) == "2 NaN and 1 inf of 4 values"
    assert describe_nonfinite(torch.tensor([[-INF, 0.0], [0.0, 0.0]])) == "1 inf of 4 values"
    assert describe_nonfinite(torch.full((2, 3), NAN)) == "6 NaN of 6 values"
