"""The NumPy objects a weights-only unpickler may rebuild, read by both checkpoint readers
(:mod:`~dreamprune_cli.models.checkpoint` and :mod:`~dreamprune_cli.models.legacy_pickle`)."""

from __future__ import annotations

from typing import Any

import numpy as np


def numpy_safe_globals() -> list[Any]:
    """NumPy objects that a weights-only unpickler may rebuild (plain numbers and dtypes)."""
    allowed: list[Any] = [np.dtype]
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed core
    allowed.append(core.multiarray.scalar)
    allowed.append(core.multiarray._reconstruct)
    allowed.append(np.ndarray)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return allowed
