"""A plain-Python robot with the walker's shapes: no MuJoCo, no simulator package.

Importable on its own (numpy only), so a test can run it in an interpreter where the
simulators cannot be imported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

N = 6  # actuators, as the walker


class PointMassPlant:
    """Six damped point masses, one per actuator, pushed toward a per-episode target.

    Observation (24, the walker's size): position (6), velocity (6), the last applied force
    (6), the target (6). Action (6): forces in [-1, 1], refused (never clipped) outside them.
    40 Hz, ``steps`` control steps per episode (then ``truncated``). Reward
    ``1 - mean |position - target|``, or ``None`` with ``rewards=False`` (a robot that cannot
    score itself). No physics state: there is nothing to replay, as on a real robot.
    """

    task = "pointmass-reach"
    observation_names = ("position", "velocity", "force", "target")
    observation_sizes = (N, N, N, N)
    actuator_names = tuple(f"motor{i}" for i in range(N))
    observation_dim = 4 * N
    action_dim = N
    control_hz = 40.0

    def __init__(self, steps: int = 1000, rewards: bool = True) -> None:
        self.action_low = -np.ones(N)
        self.action_high = np.ones(N)
        self.steps = steps
        self.rewards = rewards
        self.applied: list[np.ndarray] = []  # every action step() accepted
        self.physics_reads = 0
        self.closed = False
        self.reset(seed=0)

    def _observe(self) -> np.ndarray:
        return np.concatenate([self.position, self.velocity, self.force, self.target])

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        rng = np.random.default_rng(seed)
        self.position = rng.uniform(-0.5, 0.5, N)
        self.velocity = np.zeros(N)
        self.force = np.zeros(N)
        self.target = rng.uniform(-0.5, 0.5, N)
        self.t = 0
        return self._observe(), {"step": 0}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float | None, bool, bool, dict]:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (N,) or not np.all(np.isfinite(a)) or np.any(np.abs(a) > 1 + 1e-9):
            raise ValueError(f"action must be {N} finite forces in [-1, 1], got {a!r}")
        self.applied.append(a.copy())
        dt, mass, damping = 1.0 / self.control_hz, 0.5, 2.0
        self.velocity = self.velocity + dt * (a - damping * self.velocity) / mass
        self.position = self.position + dt * self.velocity
        self.force = a.copy()
        self.t += 1
        error = float(np.mean(np.abs(self.position - self.target)))
        reward = 1.0 - error if self.rewards else None
        return self._observe(), reward, False, self.t >= self.steps, {"step": self.t}

    def get_physics_state(self) -> np.ndarray | None:
        self.physics_reads += 1
        return None

    def close(self) -> None:
        self.closed = True
