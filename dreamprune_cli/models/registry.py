"""Model registry: one entry per architecture family, holding every fact about it once.

Entries are plain :class:`ModelInfo` records in a dict; :func:`register_model` refuses silent
overwrites (the timm habit). :func:`build_model` is the one front door that turns a name, a
variant and keyword overrides into a bare ``nn.Module``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from dreamprune_cli.errors import UsageError

Task = Literal["derain", "raindrop", "dehaze", "identity"]
MetricSpace = Literal["y", "rgb"]
SsimVariant = Literal["basicsr", "matlab"]
Quantization = Literal["round", "truncate"]
ChannelOrder = Literal["RGB", "BGR"]


@dataclass(frozen=True)
class ModelInfo:
    """Facts about one registered model family.

    Attributes:
        name: registry key, e.g. ``"ffa"``.
        factory: builds the bare network from keyword arguments.
        task: what the network restores.
        description: one line for listings.
        paper: citation of the paper.
        repository: the authors' repository and model file.
        checkpoint_format: how the authors ship weights (for the README and error hints).
        variants: named keyword-argument sets for ``factory``; ``"official"`` must exist.
        mean, std: per-channel input normalisation ``(x - mean) / std`` applied by the
            adapter, in the network's channel order; ``None`` for none.
        channel_order: the channel order the network expects (the adapter converts from RGB).
        output_index: which element of a returned list/tuple is the restored image;
            ``None`` when the network returns the tensor itself.
        size_multiple: spatial sizes must be divisible by this (the adapter pads).
        penultimate_layer: dotted module name whose *input* is the penultimate feature map
            (used by the diversity loss); by convention the network's last convolution.
        prune_exclude: dotted module names (globs allowed) of the convolutions that read the
            input image or write the restored image, i.e. the first and last convolutions;
            excluded from pruning by default.
        checkpoint_key: key of the authors' checkpoint dict that holds the weights
            (``"model"``, ``"params"``, ``"state_dict"``) or ``None`` for a bare state dict.
        checkpoint_module_prefix: whether the authors' keys start with ``module.``
            (saved from ``nn.DataParallel``).
        metric_space: the metric space the authors evaluate in.
        crop_border: pixels cropped from each border before the metrics.
        ssim_variant: the SSIM the authors report: ``basicsr`` (Wang et al.'s
            ``ssim_index.m`` as BasicSR computes it: valid window, dynamic range 255) or
            ``matlab`` (MATLAB's built-in ``ssim(A*255, ref*255)``: replicate padding, same
            size, dynamic range 1).
        quantization: how the authors' test script turns outputs into 8-bit images before
            scoring: ``round`` (``round(255 x)``) or ``truncate`` (``uint8(255 x)``, as
            PReNet's ``test_*.py`` do).
        input_encoder: maps the padded RGB [0, 1] batch (after channel order and
            ``mean``/``std``) to the network's own input, for networks with an input
            convention of their own (GCANet: 0-255 image + edge map - 128); ``None``: as is.
        output_decoder: ``(selected output, padded [0, 1] input in the network's channel
            order, network) -> restored image on the [0, 1] scale``, for networks whose
            output is not the image itself (GCANet: 0-255 scale, residual); ``None``: as is.
        input_range_note: free text about input conventions (README model table).
        depth_blocks: module-name globs of residual blocks (``x + f(x)`` computed inside)
            that depth pruning may replace by the identity, beyond those it finds by tracing
            (:mod:`dreamprune_cli.prune.depth`).
        depth_branches: module-name globs of residual branches ``f`` whose output the parent
            adds to their input (PReNet's ``relu(res_conv(x) + x)``); removed, they return
            zeros.
        depth_repeats: constructor keys counting stages repeated with shared weights (PReNet's
            ``stages``); depth pruning may lower them (to 1 at least).
    """

    name: str
    factory: Callable[..., nn.Module]
    task: Task
    description: str
    paper: str = ""
    repository: str = ""
    checkpoint_format: str = ""
    variants: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"official": {}})
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    channel_order: ChannelOrder = "RGB"
    output_index: int | None = None
    size_multiple: int = 1
    penultimate_layer: str | None = None
    prune_exclude: tuple[str, ...] = ()
    checkpoint_key: str | None = None
    checkpoint_module_prefix: bool = False
    metric_space: MetricSpace = "rgb"
    crop_border: int = 0
    ssim_variant: SsimVariant = "basicsr"
    quantization: Quantization = "round"
    input_encoder: Callable[[torch.Tensor], torch.Tensor] | None = None
    output_decoder: Callable[[torch.Tensor, torch.Tensor, nn.Module], torch.Tensor] | None = None
    input_range_note: str = "RGB in [0, 1]"
    depth_blocks: tuple[str, ...] = ()
    depth_branches: tuple[str, ...] = ()
    depth_repeats: tuple[str, ...] = ()

    @property
    def preset(self) -> str:
        """Name of the default preset file (``presets/<name>.toml``)."""
        return self.name


_REGISTRY: dict[str, ModelInfo] = {}
"""Filled by the family modules, which the package ``dreamprune_cli.models`` imports: Python
runs the package's ``__init__`` before this module, so the lookups below always see every
built-in family without importing the package back (no import circle)."""


def register_model(info: ModelInfo) -> ModelInfo:
    """Add ``info`` to the registry; a second entry with the same name is an error."""
    if info.name in _REGISTRY:
        raise ValueError(f"model {info.name!r} is already registered")
    if "official" not in info.variants:
        raise ValueError(f"model {info.name!r} must declare an 'official' variant")
    _REGISTRY[info.name] = info
    return info


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def get_model_info(name: str) -> ModelInfo:
    """Registry entry for ``name``; unknown names raise a :class:`UsageError` listing the known."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UsageError(f"unknown model {name!r}; expected one of: {known}, "
                         "or a custom model 'package.module:factory' / 'file.py:Class'") from None


def model_config(name: str, variant: str = "official", **overrides: Any) -> dict[str, Any]:
    """The full keyword arguments ``build_model`` passes to the factory."""
    info = get_model_info(name)
    if variant not in info.variants:
        raise UsageError(f"model {name!r} has no variant {variant!r}; "
                         f"expected one of: {', '.join(info.variants)}")
    return {**info.variants[variant], **overrides}


def build_model(name: str, variant: str = "official", **overrides: Any) -> nn.Module:
    """Build the bare network ``name`` (variant kwargs updated by ``overrides``)."""
    info = get_model_info(name)
    kwargs = model_config(name, variant, **overrides)
    try:
        return info.factory(**kwargs)
    except TypeError as exc:
        raise UsageError(f"model {name!r}: bad constructor arguments {kwargs}: {exc}") from exc
