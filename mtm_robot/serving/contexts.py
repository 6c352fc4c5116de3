"""Act requests <-> :class:`~mtm_robot.inference.Context` and replies, checked against the spec.

The node calls :func:`context_from_message` in its receive loop, so a request with a wrong
field, shape or mode is answered with an error before it reaches the batcher.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mtm_robot.inference import Context, Prediction
from mtm_robot.model.mtm import DataSpec
from mtm_robot.serving import protocol as wire

#: Array fields per mode, beyond ``state`` and the optional history pair.
MODE_ARRAYS: dict[str, tuple[str, ...]] = {
    "behavior_cloning": (),
    "return_conditioned": (),
    "two_stage": (),
    "inverse_dynamics": ("future_states",),
    "forward_dynamics": ("planned_actions",),
    "goal": ("goal_state",),
}
HISTORY_ARRAYS = ("history_states", "history_actions")
MODES_WITH_RETURN = ("return_conditioned", "two_stage")
MAX_ROWS = 4096  # longest history or future accepted (the predictor keeps what fits)


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


def context_from_message(message: wire.Message, spec: DataSpec, modes: tuple[str, ...]) -> Context:
    """Build and check the context of an ``act`` request; raises ``ProtocolError``."""
    header, arrays = message.header, message.arrays
    mode = header.get("mode", "return_conditioned")
    if not isinstance(mode, str) or mode not in modes:
        raise _fail(wire.BAD_REQUEST, f"mode {mode!r:.40} not served; modes: {list(modes)}")
    ds, da = spec.modalities["states"], spec.modalities["actions"]
    allowed = {"state", *HISTORY_ARRAYS, *MODE_ARRAYS[mode]}
    unexpected = sorted(set(arrays) - allowed)
    if unexpected:
        raise _fail(wire.BAD_REQUEST, f"mode {mode}: unexpected arrays {unexpected}")
    missing = sorted({"state", *MODE_ARRAYS[mode]} - set(arrays))
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
    if "future_states" in arrays:
        context.future_states = _rows(arrays, "future_states", ds, 1)
    if "planned_actions" in arrays:
        context.planned_actions = _rows(arrays, "planned_actions", da, 1)
    if "goal_state" in arrays:
        context.goal_state = _vector(arrays, "goal_state", ds)
    if mode in MODES_WITH_RETURN:
        target = header.get("return_target")
        if isinstance(target, bool) or not isinstance(target, int | float):
            raise _fail(wire.BAD_REQUEST, f"mode {mode} needs a number 'return_target'")
        if not math.isfinite(target):
            raise _fail(wire.NOT_FINITE, "return_target must be finite")
        context.return_target = float(target)
    elif "return_target" in header:
        raise _fail(wire.BAD_REQUEST, f"mode {mode} takes no return_target")
    return context


def deadline_ms(header: dict[str, Any]) -> float | None:
    """The request's time budget in ms from its receipt at the node, or None."""
    value = header.get("deadline_ms")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(wire.BAD_REQUEST, f"deadline_ms: expected a finite number, got {value!r:.40}")
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
    out = {"state": np.asarray(context.state, dtype=np.float32)}
    for name in ("history_states", "history_actions", "future_states", "planned_actions"):
        value = getattr(context, name)
        if value is not None:
            out[name] = np.asarray(value, dtype=np.float32)
    if context.goal_state is not None:
        out["goal_state"] = np.asarray(context.goal_state, dtype=np.float32)
    return out
