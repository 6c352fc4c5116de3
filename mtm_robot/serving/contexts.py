"""Act requests <-> :class:`~mtm_robot.inference.Context` and replies, checked against the spec.

The node calls :func:`context_from_message` in its receive loop, so a request with a wrong
field, shape or mode is answered with an error before it reaches the batcher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtm_robot.data.normalize import Normalizer
from mtm_robot.inference import Context, Prediction
from mtm_robot.model.mtm import DataSpec
from mtm_robot.return_target import to_model_units
from mtm_robot_client import protocol as wire
from mtm_robot_client.modes import ARRAYS, DEFAULT_MODE, HISTORY_ARRAYS, MODES, RETURN_UNITS

# The modes and their arrays are described once, in :mod:`mtm_robot_client.modes`.
MAX_ROWS = 4096  # longest history or future accepted (the predictor keeps what fits)
#: Largest |normalised value| accepted: |x - mean| / std over the training data. Past it an
#: input is a unit or scaling fault, not a state, and the model's output would be meaningless
#: (a float32 forward overflows to NaN from about 1e20 in physical units): ``out_of_range``.
MAX_NORMALIZED = 1e4
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: Accepted return targets: the training range widened by this many range widths each side
#: (normalised targets from -1 to 2).
RETURN_MARGIN = 1.0


@dataclass(frozen=True)
class ReturnScale:
    """A model's return units, read from its checkpoint metadata (``return_stats``, data config).

    ``horizon`` is set only for averaged returns-to-go (reference 1.3) with a known nominal
    horizon H: a return per remaining step, so an episode return R is ``R / H`` model units.
    """

    return_min: float | None = None
    return_max: float | None = None
    horizon: int | None = None

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> ReturnScale:
        stats = metadata.get("return_stats") or {}
        lo, hi = stats.get("return_min"), stats.get("return_max")
        if not isinstance(lo, int | float) or not isinstance(hi, int | float):
            return cls()
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            return cls()
        data = (metadata.get("training") or {}).get("data") or {}
        horizon = data.get("return_horizon")
        averaged = data.get("returns", "average") == "average"
        known = averaged and isinstance(horizon, int) and horizon > 0
        return cls(float(lo), float(hi), horizon if known else None)

    @property
    def units(self) -> list[str]:
        if self.return_min is None:
            return ["model"]
        return ["model", "normalized"] + (["episode_return"] if self.horizon else [])

    def _span(self) -> float:
        assert self.return_min is not None and self.return_max is not None
        width = self.return_max - self.return_min
        return width if width > 0 else max(abs(self.return_max), 1.0)

    def to_model(self, value: float, units: str) -> float:
        """``value`` in ``units`` -> model units; ProtocolError when the model cannot say."""
        if units == "model":
            return value
        if units not in self.units:
            why = (
                "its checkpoint has no return_stats"
                if self.return_min is None
                else "its returns are not averaged over a known horizon (return_horizon)"
            )
            raise _fail(
                wire.BAD_REQUEST,
                f"return_target_units '{units}' unavailable for this model: {why}; "
                f"units served: {self.units}",
            )
        assert self.return_min is not None and self.return_max is not None
        return to_model_units(value, units, self.return_min, self.return_max, self.horizon)

    def accepted(self) -> dict[str, list[float]]:
        """The accepted return-target range in each unit (empty: no training range known)."""
        if self.return_min is None or self.return_max is None:
            return {}
        margin = RETURN_MARGIN * self._span()
        lo, hi = self.return_min - margin, self.return_max + margin
        width = _width(self.return_min, self.return_max)
        out = {
            "model": [lo, hi],
            "normalized": [(lo - self.return_min) / width, (hi - self.return_min) / width],
        }
        if self.horizon:
            out["episode_return"] = [lo * self.horizon, hi * self.horizon]
        return out

    def check(self, target: float, value: float, units: str) -> None:
        """Refuse a model-unit ``target`` outside :meth:`accepted` (``out_of_range``)."""
        accepted = self.accepted()
        if not accepted:
            return
        lo, hi = accepted["model"]
        slack = 1e-9 * max(abs(lo), abs(hi), 1.0)
        if lo - slack <= target <= hi + slack:
            return
        ranges = ", ".join(f"{u} [{a:.6g}, {b:.6g}]" for u, (a, b) in accepted.items())
        hint = ""
        if units == "model" and "episode_return" in accepted:
            hint = (
                f"; to send an episode return set return_target_units: 'episode_return' "
                f"(model units are returns per step over a {self.horizon}-step horizon)"
            )
        raise _fail(
            wire.OUT_OF_RANGE,
            f"return_target {value:.6g} ({units}) is outside the accepted range: {ranges}; "
            f"training returns were [{self.return_min:.6g}, {self.return_max:.6g}] model "
            f"units{hint}",
        )

    def describe(self) -> dict[str, Any]:
        """The ``return_target`` entry of a ``metadata`` reply."""
        return {
            "units": self.units,
            "default_units": "model",
            "training_range": (
                None if self.return_min is None else [self.return_min, self.return_max]
            ),
            "horizon": self.horizon,
            "accepted": self.accepted(),
        }


def _width(lo: float, hi: float | None) -> float:
    assert hi is not None
    return hi - lo if hi > lo else 1.0


def _fail(code: str, message: str) -> wire.ProtocolError:
    return wire.ProtocolError(code, message)


def _vector(arrays: dict[str, np.ndarray], name: str, dim: int) -> np.ndarray:
    x = arrays[name]
    if x.shape not in ((dim,), (1, dim)):
        raise _fail(wire.BAD_SHAPE, f"{name}: expected shape [{dim}], got {list(x.shape)}")
    return np.asarray(x, dtype=np.float32).reshape(dim)


def _rows(arrays: dict[str, np.ndarray], name: str, dim: int, min_rows: int) -> np.ndarray:
    x = arrays[name]
    if x.ndim != 2 or x.shape[1] != dim or not min_rows <= x.shape[0] <= MAX_ROWS:
        raise _fail(
            wire.BAD_SHAPE,
            f"{name}: expected shape [n, {dim}] with {min_rows} <= n <= {MAX_ROWS}, "
            f"got {list(x.shape)}",
        )
    return np.asarray(x, dtype=np.float32)


def _check_float32(name: str, x: np.ndarray) -> None:
    """A float64 array must fit float32 (the model runs in float32)."""
    if x.size and not float(np.abs(x).max()) <= FLOAT32_MAX:
        if not np.isfinite(x).all():
            raise _fail(wire.NOT_FINITE, f"{name}: contains NaN or infinity")
        raise _fail(
            wire.OUT_OF_RANGE,
            f"{name}: {float(np.abs(x).max()):.3g} overflows float32 (the model runs in "
            f"float32; largest {FLOAT32_MAX:.3g})",
        )


_SCALES: dict[int, tuple[Normalizer, dict[str, tuple[np.ndarray, np.ndarray]]]] = {}


def _scales(normalizer: Normalizer) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per modality (mean, 1 / std) in float64, computed once per normaliser."""
    cached = _SCALES.get(id(normalizer))
    if cached is None or cached[0] is not normalizer:
        if len(_SCALES) > 8:  # a node holds one or two (a reload): never grows
            _SCALES.clear()
        scales = {
            name: (
                np.asarray(normalizer.mean[name], dtype=np.float64),
                1.0 / np.asarray(normalizer.std[name], dtype=np.float64),
            )
            for name in normalizer.mean
        }
        cached = _SCALES[id(normalizer)] = (normalizer, scales)
    return cached[1]


def _check_values(name: str, value: Any, modality: str, normalizer: Normalizer | None) -> None:
    """One pass over ``value``: finite (``not_finite``) and, with ``normalizer``, within
    ``MAX_NORMALIZED`` training standard deviations of the training mean (``out_of_range``).

    ``|x - mean| / std`` in float64 (no overflow) is NaN or infinite for a non-finite value, so
    one comparison refuses both; only a refused value is looked at again, to name the fault.
    """
    value = np.asarray(value)
    if value.size == 0:
        return
    scale = None if normalizer is None else _scales(normalizer).get(modality)
    if scale is None:
        if not np.isfinite(value).all():
            raise _fail(wire.NOT_FINITE, f"{name}: contains NaN or infinity")
        return
    mean, inv_std = scale
    if value.dtype == np.float64:  # float32 values cannot overflow a float64 product
        with np.errstate(over="ignore", invalid="ignore"):
            z = float(np.abs((value - mean) * inv_std).max())
    else:
        z = float(np.abs((value - mean) * inv_std).max())
    if z <= MAX_NORMALIZED:
        return
    if not np.isfinite(value).all():
        raise _fail(wire.NOT_FINITE, f"{name}: contains NaN or infinity")
    raise _fail(
        wire.OUT_OF_RANGE,
        f"{name}: a value lies {z:.3g} training standard deviations from the training "
        f"mean (limit {MAX_NORMALIZED:g}); check its units and scaling",
    )


def context_from_message(
    message: wire.Message,
    spec: DataSpec,
    modes: tuple[str, ...],
    normalizer: Normalizer | None = None,
    returns: ReturnScale | None = None,
) -> Context:
    """Build and check the context of an ``act`` request; raises ``ProtocolError``.

    Every array value must be finite (``not_finite``; the node decodes with
    ``check_finite=False`` and relies on this); with ``normalizer``, every value whose
    normalised magnitude exceeds ``MAX_NORMALIZED`` is refused (``out_of_range``); float64
    values past float32 always are. With ``returns``, the
    return target may be given in any of its units and must lie in its accepted range.
    """
    header, arrays = message.header, message.arrays
    for name, x in arrays.items():
        if x.dtype == np.float64:  # float32 input cannot overflow the model's float32
            _check_float32(name, x)
    mode = header.get("mode", DEFAULT_MODE)
    if not isinstance(mode, str) or mode not in modes:
        raise _fail(wire.BAD_REQUEST, f"mode {mode!r:.40} not served; modes: {list(modes)}")
    description = MODES[mode]
    ds, da = spec.modalities["states"], spec.modalities["actions"]
    unexpected = set(arrays).difference(description.allowed_arrays)
    if unexpected:
        raise _fail(wire.BAD_REQUEST, f"mode {mode}: unexpected arrays {sorted(unexpected)}")
    missing = sorted({"state", *description.arrays} - set(arrays))
    if missing:
        raise _fail(wire.BAD_REQUEST, f"mode {mode}: missing arrays {missing}")
    context = Context(mode=mode, state=_vector(arrays, "state", ds))
    if any(n in arrays for n in HISTORY_ARRAYS):
        if not all(n in arrays for n in HISTORY_ARRAYS):
            raise _fail(wire.BAD_REQUEST, "history_states and history_actions go together")
        context.history_states = _rows(arrays, "history_states", ds, 0)
        context.history_actions = _rows(arrays, "history_actions", da, 0)
        if len(context.history_states) != len(context.history_actions):
            raise _fail(
                wire.BAD_SHAPE,
                f"history_states has {len(context.history_states)} rows, "
                f"history_actions {len(context.history_actions)}",
            )
    for name in description.arrays:
        array = ARRAYS[name]
        dim = spec.modalities[array.modality]
        value = (
            _rows(arrays, name, dim, array.min_rows) if array.rows else _vector(arrays, name, dim)
        )
        setattr(context, name, value)
    if description.needs_return_target:
        target = header.get("return_target")
        if isinstance(target, bool) or not isinstance(target, int | float):
            raise _fail(wire.BAD_REQUEST, f"mode {mode} needs a number 'return_target'")
        if not math.isfinite(target):
            raise _fail(wire.NOT_FINITE, "return_target must be finite")
        units = header.get("return_target_units", "model")
        if not isinstance(units, str) or units not in RETURN_UNITS:
            raise _fail(
                wire.BAD_REQUEST,
                f"return_target_units {units!r:.40} unknown; expected one of {list(RETURN_UNITS)}",
            )
        scale = returns or ReturnScale()
        model_target = scale.to_model(float(target), units)
        scale.check(model_target, float(target), units)
        _check_values("return_target", model_target, "returns", normalizer)
        context.return_target = model_target
    else:
        for name in ("return_target", "return_target_units"):
            if name in header:
                raise _fail(wire.BAD_REQUEST, f"mode {mode} takes no {name}")
    for name, value in arrays.items():  # the node decodes without a finiteness pass: here
        _check_values(name, value, ARRAYS[name].modality, normalizer)
    return context


def deadline_ms(header: dict[str, Any]) -> float | None:
    """The request's time budget in ms from its receipt at the node, or None."""
    value = header.get("deadline_ms")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(wire.BAD_REQUEST, f"deadline_ms: expected a number, got {value!r:.40}")
    if not math.isfinite(value):  # as for return_target (decode already refuses these)
        raise _fail(wire.NOT_FINITE, "deadline_ms must be finite")
    return float(value)


def prediction_arrays(prediction: Prediction) -> dict[str, np.ndarray]:
    """The arrays of an ``act`` reply."""
    return {
        "action": prediction.action,
        "action_chunk": prediction.action_chunk,
        "next_states": prediction.next_states,
    }


def context_arrays(context: Context) -> dict[str, np.ndarray]:
    """The arrays of an ``act`` request for ``context`` (used by tests and benchmarks)."""
    out = {}
    for name in ARRAYS:
        value = getattr(context, name)
        if value is not None:
            out[name] = np.asarray(value, dtype=np.float32)
    return out
