"""``dreamprune_cli.models.channel_map``: a file's kept-channel record read back, refused when
malformed and dropped (with a warning) when it does not fit the network. (Recording what
Torch-Pruning kept: ``tests/prune/test_channel_map.py``.)"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.channel_map import KEPT_KEY, identity_map, read_channel_map
from dreamprune_cli.models.checkpoint import save_safetensors
from dreamprune_cli.models.loading import load_model
from dreamprune_cli.models.registry import build_model, model_config


def test_bad_records_are_refused_or_dropped(tmp_path: Path, caplog) -> None:
    with pytest.raises(UsageError, match=KEPT_KEY):
        read_channel_map({KEPT_KEY: '{"conv": {"out": [0]}}'}, "file")
    assert read_channel_map({}, "file") is None
    network = build_model("prenet", "tiny")
    wrong = {name: {"out": [0], "in": [0]} for name in identity_map(network)}
    path = save_safetensors(tmp_path / "wrong.safetensors", network.state_dict(), "prenet",
                            model_config("prenet", "tiny"),
                            extra={KEPT_KEY: json.dumps(wrong)})
    with caplog.at_level(logging.WARNING):
        loaded = load_model(None, weights=path)
    assert loaded.kept_channels is None and "does not fit" in caplog.text
