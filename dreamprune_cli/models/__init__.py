"""Model zoo: registry, adapter, checkpoint loading and one module per family."""

from dreamprune_cli.models import identity  # noqa: F401  (registers)
from dreamprune_cli.models.registry import (
    ModelInfo,
    build_model,
    get_model_info,
    list_models,
    model_config,
    register_model,
)

__all__ = ["ModelInfo", "build_model", "get_model_info", "list_models", "model_config",
           "register_model"]

# families: each module registers itself on import (one line per family below)
from dreamprune_cli.models import ffa  # noqa: E402,F401
from dreamprune_cli.models import mprnet  # noqa: E402,F401
from dreamprune_cli.models import hinet  # noqa: E402,F401
from dreamprune_cli.models import durn  # noqa: E402,F401
from dreamprune_cli.models import aganet  # noqa: E402,F401
from dreamprune_cli.models import prenet  # noqa: E402,F401
from dreamprune_cli.models import gcanet  # noqa: E402,F401
