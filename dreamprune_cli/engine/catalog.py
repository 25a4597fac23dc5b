"""What the registry holds, with sizes: the data behind ``dreamprune models``."""

from __future__ import annotations

from typing import Any

import torch

from dreamprune_cli.flops import count_costs
from dreamprune_cli.models.adapter import RestorationAdapter
from dreamprune_cli.models.registry import build_model, get_model_info, list_models


def describe_models(variant: str = "official", size: int = 256) -> list[dict[str, Any]]:
    """One record per registered model: facts from the registry, params and MACs.

    Networks are built on the meta device (no memory, no initialisation), so listing the
    88M-parameter HINet costs milliseconds. Models without ``variant`` are skipped.
    """
    rows = []
    for name in list_models():
        info = get_model_info(name)
        if variant not in info.variants:
            continue
        with torch.device("meta"):
            network = build_model(name, variant)
        cost = count_costs(RestorationAdapter(network, info), (3, size, size))
        rows.append({
            "name": name, "task": info.task, "description": info.description,
            "params": cost.params, "macs": cost.macs_dense,
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
