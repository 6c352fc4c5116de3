"""The default return target: where on a model's training return range control aims.

The one home of the rule every caller uses when no target is given (``sim_control``, the
evaluator's MTM and MLP policies, finetuning's before/after scores, the report): the bottom of
the range plus ``fraction`` of its width, in the model's return units, read from the
checkpoint metadata's ``return_stats``. ``fraction`` 1.0 (the default) is the top of the range,
the best return seen in training. Torch-free, so the controller can use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def default_return_target(
    metadata: Mapping[str, Any], fraction: float = 1.0, target: float | None = None
) -> float | None:
    """``target`` when given; else ``return_min + fraction * (return_max - return_min)`` from
    the metadata's ``return_stats``; None when the model has no return range."""
    if target is not None:
        return target
    if not math.isfinite(fraction):
        raise ValueError(f"the return-target fraction must be a finite number, got {fraction}")
    stats = metadata.get("return_stats") or {}
    if "return_min" in stats and "return_max" in stats:
        lo, hi = float(stats["return_min"]), float(stats["return_max"])
        return lo + fraction * (hi - lo)
    return None
