"""``dreamprune_cli.engine.features``: a layer's input recorded by a pre-hook, refusals."""

from __future__ import annotations

import pytest
import torch

from dreamprune_cli.engine.features import PenultimateFeatures
from dreamprune_cli.errors import UsageError
from tests.helpers import Twice


def test_the_input_of_the_layer_is_recorded_and_the_hook_removed() -> None:
    network = Twice(repeats=1).eval()
    x = torch.rand(1, 3, 16, 16)
    with PenultimateFeatures(network, "head") as hook:
        assert hook.features is None
        network(x)
        expected = torch.relu(network.body(torch.relu(network.stem(x))))
        assert torch.equal(hook.features, expected)
    hook.features = None
    network(x)
    assert hook.features is None  # removed on exit
    assert not network.head._forward_pre_hooks


def test_the_last_call_of_a_shared_layer_wins() -> None:
    network = Twice(repeats=3).eval()
    x = torch.rand(1, 3, 16, 16)
    with PenultimateFeatures(network, "body") as hook:
        network(x)
    y = torch.relu(network.stem(x))
    y = torch.relu(network.body(torch.relu(network.body(y))))  # the input of the third call
    assert torch.equal(hook.features, y)


def test_no_layer_or_an_unknown_one_is_refused() -> None:
    with pytest.raises(UsageError, match=r"names no penultimate layer.*lambda_orth 0"):
        PenultimateFeatures(Twice(), None)
    with pytest.raises(UsageError, match="penultimate layer 'tail' not found"):
        PenultimateFeatures(Twice(), "tail")
