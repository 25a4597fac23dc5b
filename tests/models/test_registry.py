"""``dreamprune_cli.models.registry``: registering, looking up, configuring and building models."""

from __future__ import annotations

import pytest
from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.registry import (ModelInfo, build_model, get_model_info,
                                            list_models, model_config, register_model)


def _info(name: str, **variants: dict) -> ModelInfo:
    return ModelInfo(name=name, factory=lambda width=4: nn.Conv2d(3, width, 1), task="derain",
                     description="test entry", variants=variants)


def test_register_refuses_a_second_entry_and_a_missing_official_variant() -> None:
    with pytest.raises(ValueError, match="'ffa' is already registered"):
        register_model(_info("ffa", official={}))
    with pytest.raises(ValueError, match="'no_official' must declare an 'official' variant"):
        register_model(_info("no_official", tiny={}))
    assert "no_official" not in list_models()
    assert list_models() == sorted(list_models()) and "identity" in list_models()


def test_lookups_name_what_is_known() -> None:
    assert get_model_info("ffa").name == "ffa"
    with pytest.raises(UsageError, match="unknown model 'nope'; expected one of: .*ffa.*"
                                         "or a custom model"):
        get_model_info("nope")
    with pytest.raises(UsageError, match="'ffa' has no variant 'huge'; expected one of: "
                                         "official, tiny"):
        model_config("ffa", "huge")


def test_config_and_build_with_overrides() -> None:
    tiny = model_config("ffa", "tiny")
    assert tiny == get_model_info("ffa").variants["tiny"]
    assert model_config("ffa", "tiny", blocks=1) == {**tiny, "blocks": 1}
    small = build_model("ffa", "tiny", blocks=1)
    assert sum(p.numel() for p in small.parameters()) < \
        sum(p.numel() for p in build_model("ffa", "tiny").parameters())
    with pytest.raises(UsageError, match="'ffa': bad constructor arguments .*'nope': 1"):
        build_model("ffa", "tiny", nope=1)
