"""Inference in physical units: contexts in, actions and predictions out, for every mode.

This is the one home of turning a request's context into model inputs (slot layout, mask,
normalisation) and model outputs back into an action, an action chunk and predicted states.
Both the Python API (:meth:`Predictor.predict`) and the inference node (which batches many
contexts from many clients into one fixed-shape forward) go through :meth:`predict_batch`.

Slot layout of a segment of length L (see :mod:`mtm_robot.model.masks`): slots ``0..k-1`` hold
the last ``k`` executed (state, action) pairs, slot ``k`` the current state, later slots the
future (desired states for ``inverse_dynamics``, the goal in the last slot for ``goal``,
planned actions for ``forward_dynamics``). History longer than L-1 is cut to its last L-1 pairs.
What goes where for each mode, and where its answer is read, is looked up in
:mod:`mtm_robot_client.modes`; no code here branches on a mode's name.
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
from mtm_robot_client.modes import ARRAYS, MODES, REPLY_ARRAYS, Mode
from mtm_robot_client.modes import slots as mode_slots

#: A batched forward in normalised units: inputs name -> (B, L, k) float32, masks name ->
#: (B, L) bool; returns name -> (B, L, k) float32. Torch and ONNX backends both provide one.
ForwardFn = Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], dict[str, np.ndarray]]


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
        """The modes this model serves: the return modes need a ``returns`` modality."""
        return tuple(name for name, mode in MODES.items() if self._serves(mode))

    def _serves(self, mode: Mode) -> bool:
        return not mode.needs_return_target or "returns" in self.spec.modalities

    # -- assembly ---------------------------------------------------------------------------
    def _layout(self, ctx: Context) -> tuple[dict[str, np.ndarray], list[mask_lib.Mask], int]:
        """Raw (unnormalised) slot arrays (L, k), the mask of each forward, the history length.

        Everything mode-specific is looked up in the mode's description
        (:mod:`mtm_robot_client.modes`): its arrays and their placements, its return target,
        whether it keeps a future slot; its masks come from ``masks.MODE_MASKS``.
        """
        L = self.spec.segment_length
        ds, da = self.spec.modalities["states"], self.spec.modalities["actions"]
        mode = MODES.get(ctx.mode)
        if mode is None or not self._serves(mode):
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
        # a mode that needs a future slot (a desired state, a goal, stage 2's predicted
        # states) cuts its history to L-2 steps
        if mode.needs_future_slot and L < 2:
            raise SpecMismatchError(f"mode '{ctx.mode}' needs segment_length >= 2")
        k = min(len(hs), L - 2 if mode.needs_future_slot else L - 1)
        hs, ha = hs[len(hs) - k :], ha[len(ha) - k :]
        slots = {n: np.zeros((L, d), dtype=np.float32) for n, d in self.spec.modalities.items()}
        slots["states"][:k] = hs
        slots["states"][k] = state[0]
        slots["actions"][:k] = ha
        rows: dict[str, int] = {}  # rows placed of each row array: the mask builder's counts
        for name, placement in mode.layout:
            array = ARRAYS[name]
            given = _rows(getattr(ctx, name), self.spec.modalities[array.modality], name)
            if not array.rows and len(given) != 1:
                raise SpecMismatchError(f"{ctx.mode} needs exactly one {name}")
            where = mode_slots(placement, L, k)
            given = given[: where.stop - where.start]  # what fits
            if len(given) == 0:
                raise SpecMismatchError(f"{ctx.mode} needs at least one row of {name}")
            slots[array.modality][where.start : where.start + len(given)] = given
            if array.rows:
                rows[name] = len(given)
        if mode.needs_return_target:
            if ctx.return_target is None or not np.isfinite(ctx.return_target):
                raise SpecMismatchError(f"{ctx.mode} needs a finite return_target")
            slots["returns"][:] = ctx.return_target
        masks = mask_lib.mode_masks(ctx.mode, self.names, L, k, **rows)
        return slots, masks, k

    def _normalise(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: self.normalizer.normalize(n, v) for n, v in raw.items()}

    # -- running ----------------------------------------------------------------------------
    def predict_batch(self, contexts: Sequence[Context]) -> list[Prediction]:
        """One fixed-shape forward for every context, then one more for the contexts whose
        mode takes another forward (``two_stage``), each time with only those contexts."""
        layouts = [self._layout(c) for c in contexts]
        if len(layouts) == 1:  # a batch of one (a controller's tick): views, no stacking
            raw = {n: layouts[0][0][n][None] for n in self.names}
            mask = {n: m[None] for n, m in layouts[0][1][0].items()}
        else:
            raw = {n: np.stack([lay[0][n] for lay in layouts]) for n in self.names}
            mask = mask_lib.stack_masks([lay[1][0] for lay in layouts])
        out = self.forward(self._normalise(raw), mask)
        stage = 1
        while later := [i for i, lay in enumerate(layouts) if len(lay[1]) > stage]:
            out = self._next_forward(out, raw, layouts, later, stage)
            stage += 1
        actions = self.normalizer.denormalize("actions", out["actions"])  # (B, L, da)
        states = self.normalizer.denormalize("states", out["states"])  # (B, L, ds)
        outputs = {"actions": actions, "states": states}
        L = self.spec.segment_length
        where: dict[int, dict[str, tuple[str, slice]]] = {}  # by history: REPLY_ARRAYS' slots
        results = []
        for i, (_, _, k) in enumerate(layouts):
            if k not in where:
                where[k] = {
                    name: (modality, mode_slots(placement, L, k))
                    for name, (modality, placement) in REPLY_ARRAYS.items()
                }
            read = {name: outputs[m][i, slots].copy() for name, (m, slots) in where[k].items()}
            results.append(
                Prediction(read["action"][0], read["action_chunk"], read["next_states"], k)
            )
        return results

    def _next_forward(
        self,
        out: dict[str, np.ndarray],
        raw: dict[str, np.ndarray],
        layouts: list[tuple[dict[str, np.ndarray], list[mask_lib.Mask], int]],
        later: list[int],
        stage: int,
    ) -> dict[str, np.ndarray]:
        """Forward ``stage`` (0-based) of the contexts ``later``: each slot its mask newly
        unmasks holds the previous forward's prediction (two_stage: stage 1's future states
        and returns); the others keep their inputs. Returns ``out`` with their rows replaced."""
        raw2 = {n: raw[n][later].copy() for n in self.names}
        masks2 = []
        for j, i in enumerate(later):
            before, now = layouts[i][1][stage - 1], layouts[i][1][stage]
            for name in self.names:
                unmasked = now[name] & ~before[name]
                if unmasked.any():
                    predicted = self.normalizer.denormalize(name, out[name][i])
                    raw2[name][j, unmasked] = predicted[unmasked]
            masks2.append(now)
        out2 = self.forward(self._normalise(raw2), mask_lib.stack_masks(masks2))
        merged = {n: out[n].copy() for n in self.names}
        for n in self.names:
            merged[n][later] = out2[n]
        return merged

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
