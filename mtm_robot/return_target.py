"""The default return target: where on a model's training return range control aims.

The one home of the rule every caller uses when no target is given (``sim_control``, the
evaluator's MTM and MLP policies, finetuning's before/after scores, the report): the bottom of
the range plus ``fraction`` of its width, in the model's return units, read from the
checkpoint metadata's ``return_stats``. ``fraction`` 1.0 (the default) is the top of the range,
the best return seen in training. Also the one conversion of a target given in other units
(:func:`to_model_units`), used by the node and by ``sim_control --target-return-units``.
Torch-free, so the controller can use it.
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


def to_model_units(
    value: float, units: str, return_min: float, return_max: float, horizon: int | None
) -> float:
    """A return target in ``units`` -> the model's units: ``model`` as is, ``normalized`` (0 the
    bottom, 1 the top of the training range ``[return_min, return_max]``), ``episode_return`` (a
    whole episode's return; models trained on returns averaged over ``horizon`` steps)."""
    if units == "model":
        return value
    if units == "normalized":
        return return_min + value * (return_max - return_min if return_max > return_min else 1.0)
    if units == "episode_return" and horizon:
        return value / horizon
    raise ValueError(f"return target units {units!r} cannot be converted for this model")
