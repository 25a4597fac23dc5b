"""The front door every subcommand uses: a model name and weights in, a ready model out."""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dreamprune_cli.errors import UsageError
from dreamprune_cli.models.adapter import RestorationAdapter
from dreamprune_cli.models.channel_map import (ChannelMap, channel_map_metadata, map_problems,
                                              read_channel_map)
from dreamprune_cli.models.checkpoint import load_weights, read_checkpoint, save_safetensors
from dreamprune_cli.models.custom import custom_model_info, declared_info, is_custom_spec
from dreamprune_cli.models.depth import depth_metadata, read_removed, remove_modules
from dreamprune_cli.models.registry import ModelInfo, get_model_info, model_config
from dreamprune_cli.models.teachers import bundled_teacher_path
from dreamprune_cli.models.resize import (GRANULARITY_KEY, architecture_metadata,
                                         resize_to_state_dict)

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A built network with the facts needed to call it and to save it again."""

    name: str
    info: ModelInfo
    network: nn.Module
    config: dict[str, Any]
    weights: Path | None
    granularity: str = "unstructured"  # see STRUCTURED: thinner or fewer layers
    kept_channels: ChannelMap | None = None
    """Per convolution and linear layer, the teacher's output and input channels it kept
    (:mod:`dreamprune_cli.models.channel_map`); set on structured students made or saved
    since the map exists, ``None`` otherwise (teachers, masked students, older files)."""

    @property
    def structured(self) -> bool:
        """Whether whole channels, blocks or stages were removed (no weight masks)."""
        return self.granularity in STRUCTURED

    def adapter(self) -> RestorationAdapter:
        """The network wrapped to take and return RGB [0, 1] of any size."""
        return RestorationAdapter(self.network, self.info)

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        """Restore ``rgb``: RGB in [0, 1], ``(N, 3, H, W)`` or one ``(3, H, W)`` image of any
        size (padded and cropped back as the model needs), returned in the same shape, not
        clamped, on the network's device (the input is moved there).

        Runs the :meth:`adapter` under ``torch.no_grad()`` in the network's current mode
        (``eval`` after :func:`load_model`); for gradients (dreaming, training) call
        ``self.adapter()(rgb)`` instead.

        Raises:
            ValueError: ``rgb`` is not a floating-point 3-channel image tensor.
        """
        if not (isinstance(rgb, torch.Tensor) and rgb.is_floating_point()
                and rgb.dim() in (3, 4) and rgb.shape[-3] == 3):
            shape = tuple(rgb.shape) if isinstance(rgb, torch.Tensor) else type(rgb).__name__
            raise ValueError(f"expected a float RGB tensor (N, 3, H, W) or (3, H, W) in [0, 1], "
                             f"got {shape}")
        weights = next(itertools.chain(self.network.parameters(), self.network.buffers()), None)
        batch = rgb.unsqueeze(0) if rgb.dim() == 3 else rgb
        if weights is not None:
            batch = batch.to(weights.device)
        with torch.no_grad():
            restored = self.adapter().to(batch.device)(batch)
        return restored[0] if rgb.dim() == 3 else restored

    def file_metadata(self) -> dict[str, str]:
        """What a file of this network's state dict must record to be rebuilt: thinner
        layers (:func:`~dreamprune_cli.models.resize.architecture_metadata`), removed blocks
        (:func:`~dreamprune_cli.models.depth.depth_metadata`), the granularity, and the
        kept-channel map when there is one
        (:func:`~dreamprune_cli.models.channel_map.channel_map_metadata`)."""
        state = self.network.state_dict()
        metadata = {**architecture_metadata(state, self.info.factory, self.config),
                    **depth_metadata(self.network), **channel_map_metadata(self.kept_channels)}
        if self.structured:
            metadata[GRANULARITY_KEY] = self.granularity
        return metadata


STRUCTURED: tuple[str, ...] = ("channel", "depth", "depth+channel")
"""Granularities whose students are smaller networks (files record how to rebuild them)."""


def resolve_info(name: str) -> ModelInfo:
    """Registry entry of ``name``, or an entry built for a custom ``module:factory``."""
    return custom_model_info(name) if is_custom_spec(name) else get_model_info(name)


def load_model(name: str | None, variant: str = "official", weights: str | Path | None = None,
               strict: bool = True, trust: bool = False,
               overrides: dict[str, Any] | None = None,
               use_bundled: bool = True, require_weights: bool = False,
               weights_field: str = "weights") -> LoadedModel:
    """Build model ``name`` and load ``weights`` into it.

    Args:
        name: registered name or custom spec; may be ``None`` when ``weights`` is a
            dreamprune safetensors file, whose metadata names the model and its config.
        variant: registry variant (``official``, ``tiny``) when the weights carry no config.
        weights: checkpoint path; ``None`` loads the model's bundled teacher when one ships
            (and ``use_bundled``), else keeps the constructor's initialisation.
        strict: refuse weights whose keys or shapes do not fit.
        trust: allow full unpickling of a trusted checkpoint.
        overrides: constructor keyword arguments replacing the variant's.
        use_bundled: with ``weights=None``, use the bundled teacher of ``name`` if any
            (``dreamprune_cli/assets/teachers``; its metadata carries its tiny config).
        require_weights: refuse to return a registered model with parameters but no weights
            (no ``weights``, no bundled teacher): a randomly initialised network is never
            what a command-line user means to compress, dream on or score. Custom models
            are exempt (their factory may load its own weights).

    Raises:
        UsageError: unknown model or variant, weights that do not fit, or no weights when
            ``require_weights``.
    """
    overrides = dict(overrides or {})
    if weights is None and use_bundled and name is not None and not is_custom_spec(name):
        bundled = bundled_teacher_path(name)
        if bundled is not None:
            log.info("using the bundled %s teacher (%s)", name, bundled)
            weights = bundled
    checkpoint = None
    if weights is not None:
        key = None if name is None or is_custom_spec(name) else get_model_info(name).checkpoint_key
        checkpoint = read_checkpoint(weights, key=key, trust=trust, field=weights_field)
        if name is None:
            name = checkpoint.model_name
            if name is None:
                raise UsageError(f"${weights_field} {weights}: the file does not name its "
                                 "model; pass $model")
        elif checkpoint.model_name and checkpoint.model_name != name:
            log.warning("--weights %s was saved for model %r, loading it as %r",
                        weights, checkpoint.model_name, name)
    if name is None:
        raise UsageError("$model is required (a registered name, or 'module:factory')")
    info = resolve_info(name)
    if checkpoint is not None and checkpoint.model_config is not None \
            and checkpoint.model_name == name:
        config = {**checkpoint.model_config, **overrides}
    elif is_custom_spec(name):
        config = overrides
    else:
        config = model_config(name, variant, **overrides)
    if require_weights and checkpoint is None and not is_custom_spec(name) \
            and _has_parameters(info, config):
        raise UsageError(
            f"model {name!r} has no bundled teacher and no $weights were given: pass "
            f"$weights FILE ({info.checkpoint_format or 'a checkpoint of its authors'}, or "
            "a dreamprune .safetensors), or $random_weights to run on a randomly "
            "initialised network")
    try:
        network = info.factory(**config)
    except TypeError as exc:
        raise UsageError(f"model {name!r}: bad constructor arguments {config}: {exc}") from exc
    granularity = "unstructured"
    if checkpoint is not None and checkpoint.metadata.get(GRANULARITY_KEY) in STRUCTURED:
        granularity = checkpoint.metadata[GRANULARITY_KEY]
        where = f"${weights_field} {weights}"
        remove_modules(network, read_removed(checkpoint.metadata, where))  # depth-pruned
        if granularity != "depth":  # thinner layers
            resize_to_state_dict(network, checkpoint.state_dict)
    kept_channels = None
    if checkpoint is not None:
        skipped = load_weights(network, checkpoint, strict=strict)
        for problem in skipped:
            log.warning("--non-strict: %s", problem)
        kept_channels = _channel_map(network, checkpoint.metadata, weights_field, weights)
    network.eval()
    if is_custom_spec(name):
        info = declared_info(info, network)
    return LoadedModel(name=name, info=info, network=network, config=config,
                       weights=Path(weights) if weights is not None else None,
                       granularity=granularity, kept_channels=kept_channels)


def _channel_map(network: nn.Module, metadata: dict[str, str], field: str,
                 path: str | Path) -> ChannelMap | None:
    """The file's kept-channel map if it describes ``network``; ``None`` (with a warning
    naming the first problems) when it does not, or when the file has none.

    Raises:
        UsageError: a malformed record (:func:`~dreamprune_cli.models.channel_map.
            read_channel_map`).
    """
    kept = read_channel_map(metadata, f"${field} {path}")
    if kept is None:
        return None
    problems = map_problems(network, kept)
    if problems:
        log.warning("%s: its kept-channel map does not fit the network (%s); loaded without "
                    "it", path, "; ".join(problems[:3]))
        return None
    return kept


def _has_parameters(info: ModelInfo, config: dict[str, Any]) -> bool:
    """Whether the network has weights to load (built on the meta device: no memory)."""
    try:
        with torch.device("meta"):
            network = info.factory(**config)
    except TypeError as exc:
        raise UsageError(f"model {info.name!r}: bad constructor arguments {config}: "
                         f"{exc}") from exc
    return any(True for _ in network.parameters())


def save_model(loaded: LoadedModel, path: str | Path, extra: dict[str, str] | None = None,
               overwrite: bool = False) -> Path:
    """Save the network's state dict as safetensors naming the model and its config.

    The file loads again with ``load_model(None, weights=path)``; a channel- or depth-pruned
    network is marked as such in the metadata (:meth:`LoadedModel.file_metadata`), so that
    loading removes its blocks and resizes its layers to its tensors.
    """
    extra = {**loaded.file_metadata(), **(extra or {})}
    return save_safetensors(path, loaded.network.state_dict(), loaded.name, loaded.config,
                            extra=extra, overwrite=overwrite)
