"""An in-process stand-in for the node client, and a toy environment, for procedure tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class ToyEnv:
    """x' = x + 0.5 a, reward 1 - |x| summed; 2-d state and action in [-1, 1]."""

    task = "toy"
    action_low = -np.ones(2)
    action_high = np.ones(2)
    action_dim = 2
    observation_dim = 2
    control_hz = 50.0

    def __init__(self, steps: int = 20) -> None:
        self.steps = steps

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self.x = np.random.default_rng(seed).uniform(-1, 1, size=2)
        self.t = 0
        return self.x.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.x = self.x + 0.5 * np.asarray(action)
        self.t += 1
        return self.x.copy(), 1.0 - float(np.abs(self.x).sum()), False, self.t >= self.steps, {}

    def get_physics_state(self) -> np.ndarray:
        return self.x.copy()


@dataclass
class FakeReply:
    action: np.ndarray
    ok: bool = True
    model_id: str = "fake"
    action_chunk: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    next_states: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))


class FakeClient:
    """Answers at once: action = clip(-5 * target * state), so x' = (1 - 2.5 target) x:
    target 0.4 brings the state to 0 in one step, the best return."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._replies: dict[int, FakeReply] = {}

    def _answer(self, mode: str, state: np.ndarray, **fields: Any) -> FakeReply:
        self.requests.append({"mode": mode, **fields})
        target = fields.get("return_target") or 0.0
        return FakeReply(np.clip(-5.0 * target * np.asarray(state), -1, 1))

    def act(self, mode: str, state: np.ndarray, timeout_ms: float = 0, **fields: Any) -> FakeReply:
        return self._answer(mode, state, **fields)

    def submit(self, mode: str, state: np.ndarray, **fields: Any) -> int:
        rid = len(self.requests) + 1
        fields.pop("deadline_ms", None)
        self._replies[rid] = self._answer(mode, state, **fields)
        return rid

    def poll(self, request_id: int, timeout_ms: float = 0.0) -> FakeReply | None:
        return self._replies.pop(request_id, None)

    def abandon(self, request_id: int) -> None:
        self._replies.pop(request_id, None)
