"""Inference in physical units: contexts in, actions and predictions out, for every mode.

This is the one home of turning a request's context into model inputs (slot layout, mask,
normalisation) and model outputs back into an action, an action chunk and predicted states.
Both the Python API (:meth:`Predictor.predict`) and the inference node (which batches many
contexts from many clients into one fixed-shape forward) go through :meth:`predict_batch`.

Slot layout of a segment of length L (see :mod:`mtm_robot.model.masks`): slots ``0..k-1`` hold
the last ``k`` executed (state, action) pairs, slot ``k`` the current state, later slots the
future (desired states for ``inverse_dynamics``, the goal in the last slot for ``goal``,
planned actions for ``forward_dynamics``). History longer than L-1 is cut to its last L-1 pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mtm_robot.data.normalize import Normalizer
from mtm_robot.errors import SpecMismatchError
from mtm_robot.model import masks as mask_lib
from mtm_robot.model.mtm import MTM, DataSpec

#: A batched forward in normalised units: inputs name -> (B, L, k) float32, masks name ->
#: (B, L) bool; returns name -> (B, L, k) float32. Torch and ONNX backends both provide one.
ForwardFn = Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], dict[str, np.ndarray]]

MODES = mask_lib.INFERENCE_MODES


@dataclass
class Context:
    """What one request knows, in physical units."""

    mode: str
    state: np.ndarray  # (ds,) current state
    history_states: np.ndarray | None = None  # (k, ds) states of the last k steps
    history_actions: np.ndarray | None = None  # (k, da) actions executed in them
    return_target: float | None = None  # return_conditioned, two_stage
    future_states: np.ndarray | None = None  # inverse_dynamics: (f, ds) desired next states
    goal_state: np.ndarray | None = None  # goal: (ds,) state to reach by the last slot
    planned_actions: np.ndarray | None = None  # forward_dynamics: (p, da) from the current slot


@dataclass
class Prediction:
    """Outputs for one context, in physical units."""

    action: np.ndarray  # (da,) the action to apply now (slot k)
    action_chunk: np.ndarray  # (L-k, da) predicted actions from slot k on
    next_states: np.ndarray  # (L-k-1, ds) predicted states after slot k
    history: int  # k: the slot of the current state


def _rows(x: np.ndarray | None, dim: int, name: str) -> np.ndarray:
    if x is None:
        return np.zeros((0, dim), dtype=np.float32)
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1 and x.size == dim:
        x = x.reshape(1, dim)
    if x.ndim != 2 or x.shape[1] != dim:
        raise SpecMismatchError(f"{name}: expected shape (n, {dim}), got {x.shape}")
    return x


class Predictor:
    """Runs an MTM in any mode on physical-unit contexts."""

    def __init__(self, spec: DataSpec, normalizer: Normalizer, forward: ForwardFn) -> None:
        self.spec = spec
        self.normalizer = normalizer
        self.forward = forward
        self.names = list(spec.modalities)
        for required in ("states", "actions"):
            if required not in spec.modalities:
                raise SpecMismatchError(
                    f"control needs a '{required}' modality, model has {self.names}"
                )

    @classmethod
    def from_model(cls, model: MTM, normalizer: Normalizer) -> Predictor:
        return cls(model.spec, normalizer, torch_forward(model))

    @property
    def modes(self) -> tuple[str, ...]:
        has_returns = "returns" in self.spec.modalities
        return tuple(
            m for m in MODES if has_returns or m not in ("return_conditioned", "two_stage")
        )

    # -- assembly ---------------------------------------------------------------------------
    def _layout(self, ctx: Context) -> tuple[dict[str, np.ndarray], mask_lib.Mask, int]:
        """Raw (unnormalised) slot arrays (L, k), the mask, and the history length."""
        L = self.spec.segment_length
        ds, da = self.spec.modalities["states"], self.spec.modalities["actions"]
        if ctx.mode not in self.modes:
            raise SpecMismatchError(
                f"mode '{ctx.mode}' not served by this model; modes: {list(self.modes)}"
            )
        state = _rows(ctx.state, ds, "state")
        if len(state) != 1:
            raise SpecMismatchError(f"state: expected one state of dim {ds}, got {state.shape}")
        hs = _rows(ctx.history_states, ds, "history_states")
        ha = _rows(ctx.history_actions, da, "history_actions")
        if len(hs) != len(ha):
            raise SpecMismatchError(
                f"history_states has {len(hs)} rows but history_actions {len(ha)}"
            )
        max_history = L - 1
        # these modes need a future slot (the desired state, the goal, stage 2's predicted
        # states): their history is cut to L-2 steps
        needs_future = ("inverse_dynamics", "goal", "two_stage")
        if ctx.mode in needs_future:
            max_history = L - 2
        if L < 2 and ctx.mode in needs_future:
            raise SpecMismatchError(f"mode '{ctx.mode}' needs segment_length >= 2")
        k = min(len(hs), max_history)
        hs, ha = hs[len(hs) - k :], ha[len(ha) - k :]
        slots = {n: np.zeros((L, d), dtype=np.float32) for n, d in self.spec.modalities.items()}
        slots["states"][:k] = hs
        slots["states"][k] = state[0]
        slots["actions"][:k] = ha
        if ctx.mode == "inverse_dynamics":
            future = _rows(ctx.future_states, ds, "future_states")
            if len(future) == 0:
                raise SpecMismatchError("inverse_dynamics needs at least one future state")
            future = future[: L - 1 - k]
            slots["states"][k + 1 : k + 1 + len(future)] = future
            mask = mask_lib.inverse_dynamics(self.names, L, k, len(future))
        elif ctx.mode == "goal":
            goal = _rows(ctx.goal_state, ds, "goal_state")
            if len(goal) != 1:
                raise SpecMismatchError("goal needs exactly one goal_state")
            slots["states"][L - 1] = goal[0]
            mask = mask_lib.goal(self.names, L, k)
        elif ctx.mode == "forward_dynamics":
            planned = _rows(ctx.planned_actions, da, "planned_actions")[: L - k]
            if len(planned) == 0:
                raise SpecMismatchError("forward_dynamics needs at least one planned action")
            slots["actions"][k : k + len(planned)] = planned
            mask = mask_lib.forward_dynamics(self.names, L, k, len(planned))
        elif ctx.mode in ("return_conditioned", "two_stage"):
            if ctx.return_target is None or not np.isfinite(ctx.return_target):
                raise SpecMismatchError(f"{ctx.mode} needs a finite return_target")
            slots["returns"][:] = ctx.return_target
            if ctx.mode == "two_stage":
                mask = mask_lib.two_stage(self.names, L, k)[0]
            else:
                mask = mask_lib.return_conditioned(self.names, L, k)
        else:
            mask = mask_lib.behavior_cloning(self.names, L, k)
        return slots, mask, k

    def _normalise(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: self.normalizer.normalize(n, v) for n, v in raw.items()}

    # -- running ----------------------------------------------------------------------------
    def predict_batch(self, contexts: Sequence[Context]) -> list[Prediction]:
        """One fixed-shape forward for every context (two for any ``two_stage`` ones)."""
        layouts = [self._layout(c) for c in contexts]
        raw = {n: np.stack([lay[0][n] for lay in layouts]) for n in self.names}
        mask = mask_lib.stack_masks([lay[1] for lay in layouts])
        out = self.forward(self._normalise(raw), mask)
        two_stage = [i for i, c in enumerate(contexts) if c.mode == "two_stage"]
        if two_stage:
            L = self.spec.segment_length
            raw2 = {n: raw[n][two_stage].copy() for n in self.names}
            masks2 = []
            for j, i in enumerate(two_stage):
                k = layouts[i][2]
                for name in ("states", "returns"):  # stage 1's future fills stage 2's
                    predicted = self.normalizer.denormalize(name, out[name][i])
                    raw2[name][j, k + 1 :] = predicted[k + 1 :]
                masks2.append(mask_lib.two_stage(self.names, L, k)[1])
            out2 = self.forward(self._normalise(raw2), mask_lib.stack_masks(masks2))
            for n in self.names:
                out[n] = out[n].copy()
                out[n][two_stage] = out2[n]
        actions = self.normalizer.denormalize("actions", out["actions"])  # (B, L, da)
        states = self.normalizer.denormalize("states", out["states"])  # (B, L, ds)
        results = []
        for i, (_, _, k) in enumerate(layouts):
            results.append(
                Prediction(
                    actions[i, k].copy(), actions[i, k:].copy(), states[i, k + 1 :].copy(), k
                )
            )
        return results

    def predict(self, context: Context | None = None, **fields: object) -> Prediction:
        """Single-context convenience: ``predict(mode="inverse_dynamics", state=..., ...)``."""
        if context is None:
            context = Context(**fields)  # type: ignore[arg-type]
        return self.predict_batch([context])[0]


def torch_forward(model: MTM, device: str | torch.device = "cpu") -> ForwardFn:
    """A :data:`ForwardFn` running ``model`` in eval mode under ``torch.inference_mode``."""
    model.eval()

    def forward(
        inputs: dict[str, np.ndarray], masks: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            x = {n: torch.from_numpy(v).to(device) for n, v in inputs.items()}
            m = {n: torch.from_numpy(v).to(device) for n, v in masks.items()}
            return {n: v.float().cpu().numpy() for n, v in model(x, m).items()}

    return forward
