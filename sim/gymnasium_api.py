"""Any ``SimEnv`` as a ``gymnasium.Env`` (for gymnasium's env checker and RL libraries)."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from sim.env import SimEnv


class GymnasiumView(gymnasium.Env):
    """A thin gymnasium view of a ``SimEnv``; the ``SimEnv`` still validates every action."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"]}  # noqa: RUF012 (gymnasium API)

    def __init__(self, env: SimEnv, render_mode: str | None = None) -> None:
        self.env = env
        self.render_mode = render_mode
        self.metadata = {"render_modes": ["rgb_array"], "render_fps": env.control_hz}
        self.observation_space = spaces.Box(
            -np.inf, np.inf, shape=(env.observation_dim,), dtype=np.float64
        )
        self.action_space = spaces.Box(
            env.action_low.astype(np.float32), env.action_high.astype(np.float32), dtype=np.float32
        )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None:
            # gymnasium semantics: an unseeded reset continues the seeded sequence
            seed = int(self.np_random.integers(0, 2**31 - 1))
        return self.env.reset(seed=seed)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return self.env.step(action)

    def render(self) -> np.ndarray | None:
        return self.env.render() if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        self.env.close()
