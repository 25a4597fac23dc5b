"""What the registry holds, with sizes: the data behind ``dreamprune models``.

Counting MACs needs one meta-device forward pass per model (about 5 s for all of them on an
idle CPU, much longer on a busy one), so the counts are cached in
``<cache>/models/<fingerprint>.json`` (``$DREAMPRUNE_CACHE``, else ``~/.cache/dreamprune``).
The fingerprint covers the variant, the input size, the dreamprune and PyTorch versions and
the source of every model file and of the counter, so any change recomputes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch

from dreamprune_cli import __version__
from dreamprune_cli.fileio import write_text_atomic
from dreamprune_cli.flops import count_costs
from dreamprune_cli.models.adapter import RestorationAdapter
from dreamprune_cli.models.registry import build_model, get_model_info, list_models

log = logging.getLogger(__name__)

_PACKAGE = Path(__file__).resolve().parent.parent


def _fingerprint(variant: str, size: int) -> str:
    """Hash of everything the counts depend on (see the module docstring)."""
    digest = hashlib.sha256(f"{__version__}|{torch.__version__}|{variant}|{size}".encode())
    for path in sorted((_PACKAGE / "models").glob("*.py")) + [_PACKAGE / "flops.py"]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def _cache_path(variant: str, size: int) -> Path:
    from dreamprune_cli.data.synthetic import cache_dir

    return cache_dir() / "models" / f"{_fingerprint(variant, size)}.json"


def model_costs(variant: str = "official", size: int = 256,
                use_cache: bool = True) -> dict[str, dict[str, int]]:
    """``{name: {"params": P, "macs": M}}`` for every registered model that has ``variant``:
    dense parameters and MACs for one ``3 x size x size`` input, from the cache when it
    holds them (an unreadable or unwritable cache only costs time)."""
    names = [n for n in list_models() if variant in get_model_info(n).variants]
    path = _cache_path(variant, size) if use_cache else None
    if path is not None and path.is_file():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if all(name in cached for name in names):
                return {name: cached[name] for name in names}
        except (OSError, ValueError):
            pass
    costs = {}
    for name in names:
        with torch.device("meta"):
            network = build_model(name, variant)
        cost = count_costs(RestorationAdapter(network, get_model_info(name)), (3, size, size))
        costs[name] = {"params": cost.params, "macs": cost.macs_dense}
    if path is not None:
        try:
            write_text_atomic(path, json.dumps(costs, indent=1), overwrite=True)
        except OSError as exc:
            log.debug("cannot cache the model sizes in %s: %s", path, exc)
    return costs


def describe_models(variant: str = "official", size: int = 256,
                    use_cache: bool = True) -> list[dict[str, Any]]:
    """One record per registered model: facts from the registry, params and MACs.

    Networks are built on the meta device (no memory, no initialisation) and their sizes
    cached (see the module docstring). Models without ``variant`` are skipped.
    """
    costs = model_costs(variant, size, use_cache)
    rows = []
    for name, cost in costs.items():
        info = get_model_info(name)
        rows.append({
            "name": name, "task": info.task, "description": info.description,
            "params": cost["params"], "macs": cost["macs"],
            "input": info.input_range_note, "channel_order": info.channel_order,
            "normalisation": {"mean": info.mean, "std": info.std} if info.mean else None,
            "output": "tensor" if info.output_index is None else f"outputs[{info.output_index}]",
            "size_multiple": info.size_multiple, "metric_space": info.metric_space,
            "crop_border": info.crop_border, "penultimate_layer": info.penultimate_layer,
            "prune_exclude": list(info.prune_exclude), "paper": info.paper,
            "repository": info.repository, "checkpoint_format": info.checkpoint_format,
            "variants": sorted(info.variants), "preset": f"presets/{info.preset}.toml",
        })
    return rows
