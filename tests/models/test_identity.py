"""``dreamprune_cli.models.identity``: the baseline model returns its input, as registered."""

from __future__ import annotations

import torch

from dreamprune_cli.models.identity import Identity
from dreamprune_cli.models.registry import build_model, get_model_info


def test_identity_returns_its_input_unchanged() -> None:
    x = torch.rand(2, 3, 32, 40)
    assert Identity()(x) is x
    for variant in ("official", "tiny"):
        network = build_model("identity", variant)
        assert isinstance(network, Identity) and network(x) is x
        assert sum(p.numel() for p in network.parameters()) == 0


def test_the_registry_entry() -> None:
    info = get_model_info("identity")
    assert (info.task, info.metric_space, sorted(info.variants)) == \
        ("identity", "rgb", ["official", "tiny"])
    assert info.description == "degraded input as output (baseline score)"
