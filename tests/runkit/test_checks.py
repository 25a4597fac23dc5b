"""The checks made before any work (:mod:`dreamprune_cli.runkit.checks`): each names the
setting or file and what was expected. (The commands' "before any work" is tested end to end
in ``tests/test_reliability.py``.)"""

from __future__ import annotations

import dataclasses

import pytest

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.loading import load_model
from dreamprune_cli.runkit.checks import (check_diversity_layer, check_flops_size,
                                          check_offline_inputs)


def test_saved_dreams_are_the_only_inputs_of_an_offline_run() -> None:
    check_offline_inputs(True, "dreams")
    for inputs in ("dreams", "synthetic", "mixed"):
        check_offline_inputs(False, inputs)
    with pytest.raises(UsageError, match=r"^inputs synthetic: dreams distills offline"):
        check_offline_inputs(True, "synthetic")


def test_flops_size_must_be_a_multiple_of_the_models() -> None:
    model = load_model("hinet", "tiny", require_weights=False)
    multiple = model.info.size_multiple
    assert multiple > 1
    check_flops_size(model, 4 * multiple)
    with pytest.raises(UsageError, match=rf"^flops_size {multiple + 1}: expected a multiple "
                                         rf"of {multiple} for hinet"):
        check_flops_size(model, multiple + 1)


def test_the_diversity_loss_needs_a_penultimate_layer() -> None:
    model = load_model("ffa", "tiny", require_weights=False)
    check_diversity_layer(model, True)
    model.info = dataclasses.replace(model.info, penultimate_layer=None)
    check_diversity_layer(model, False)  # lambda_orth 0: not needed
    with pytest.raises(UsageError, match=r"no penultimate layer.*lambda_orth 0"):
        check_diversity_layer(model, True)
