"""Checks of the inputs against the model and the metrics, made before any work.

A problem that would stop a run halfway (an image the metrics cannot score, a size the
model cannot take, a model without the layer the diversity loss needs) is reported here, in
one line naming the file or setting and what was expected, before anything is computed or
written.
"""

from __future__ import annotations

from collections.abc import Sequence

from dreamprune_cli.data.images import check_readable
from dreamprune_cli.data.pairs import ImagePair
from dreamprune_cli.errors import UsageError
from dreamprune_cli.flops import count_costs
from dreamprune_cli.metrics import SSIM_WINDOW
from dreamprune_cli.models.custom import is_custom_spec
from dreamprune_cli.models.loading import LoadedModel


def check_input_size(model: LoadedModel, height: int, width: int, what: str) -> None:
    """A shape-only forward of ``model`` (through its adapter, padded to its size multiple)
    on a ``height x width`` image.

    Raises:
        UsageError: the model cannot take that size; names ``what`` and the constraint.
    """
    try:
        count_costs(model.adapter(), (3, height, width))
    except UsageError:
        raise
    except Exception as exc:
        multiple = model.info.size_multiple
        hint = (f"if it needs sides divisible by N, declare size_multiple = N on its class "
                f"(now {multiple}) and inputs are padded" if is_custom_spec(model.name)
                else f"its size multiple is {multiple}")
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"{what}: model {model.name!r} cannot take a {height}x{width} input "
                         f"({type(exc).__name__}: {reason}); {hint}") from None


def check_eval_pairs(model: LoadedModel, pairs: Sequence[ImagePair], crop_border: int,
                     min_side: int = SSIM_WINDOW) -> None:
    """Every image of ``pairs`` readable, with sides of at least ``min_side`` pixels after
    ``crop_border`` (the valid-region SSIM's window by default), and of a size the model
    takes (one shape-only forward per distinct size).

    Raises:
        UsageError: naming the first problem file(s) and what was expected.
    """
    sizes: dict[tuple[int, int], ImagePair] = {}
    too_small = []
    need = max(min_side, 1) + 2 * crop_border
    for pair in pairs:
        size = check_readable(pair.input_path, "input")
        check_readable(pair.target_path, "target")
        if min(size) < need:
            too_small.append(f"{pair.input_path.name} ({size[1]}x{size[0]}, width x height)")
        sizes.setdefault(size, pair)
    if too_small:
        raise UsageError(
            f"{pairs[0].input_path.parent}: images too small to score: "
            f"{', '.join(too_small[:10])}" + (f" (+{len(too_small) - 10} more)"
                                              if len(too_small) > 10 else "")
            + f"; the metrics need at least {min_side}x{min_side} pixels after cropping "
            f"{crop_border} per side ($crop_border), i.e. sides of {need} or more")
    for (height, width), pair in sizes.items():
        check_input_size(model, height, width, str(pair.input_path))


def check_diversity_layer(model: LoadedModel, needed: bool) -> None:
    """The diversity loss needs the penultimate layer (the input of the last convolution).

    Raises:
        UsageError: ``needed`` and the model has none (named, with what to declare).
    """
    if needed and model.info.penultimate_layer is None:
        raise UsageError(
            f"model {model.name!r}: no penultimate layer for the diversity loss (the input of "
            "its last convolution; none was found): declare penultimate_layer = "
            "'module.name' on its class, or pass $lambda_orth 0")


def check_flops_size(model: LoadedModel, flops_size: int) -> None:
    """``--flops-size`` must be a multiple of the model's size multiple (MACs are counted
    at the size itself, not a padded one).

    Raises:
        UsageError: naming the setting and the multiple.
    """
    multiple = model.info.size_multiple
    if flops_size % multiple:
        raise UsageError(f"$flops_size {flops_size}: expected a multiple of {multiple} for "
                         f"{model.name}")
    check_input_size(model, flops_size, flops_size, f"$flops_size {flops_size}")


def check_offline_inputs(offline: bool, inputs: str) -> None:
    """Saved dreams (``$dreams``) are the inputs of an offline run: no other source.

    Raises:
        UsageError: ``offline`` with ``inputs`` other than ``dreams``.
    """
    if offline and inputs != "dreams":
        raise UsageError(f"$inputs {inputs}: $dreams distills offline on saved dreams; drop "
                         "one of them")
