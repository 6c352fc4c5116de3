"""Gymnasium MuJoCo environments (the D4RL locomotion tasks) behind ``SimEnv``.

The adapter drives the unwrapped environment and keeps the time limit itself, so
``truncated`` is raised by ``SimEnv`` after ``max_episode_steps`` (the registered
``max_episode_steps`` of the gymnasium id, 1,000 for the locomotion tasks) and ``terminated``
passes through the environment's own termination (unhealthy hopper/walker).
"""

from __future__ import annotations

import logging
from typing import Any

import mujoco
import numpy as np

from sim.env import SimEnv

logger = logging.getLogger(__name__)


class GymnasiumEnv(SimEnv):
    """A gymnasium MuJoCo id (``Walker2d-v5`` etc.) as a ``SimEnv``."""

    def __init__(self, task: str, env_id: str, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__()
        import gymnasium  # imported lazily: importing sim must stay cheap

        self.task = task
        wrapped = gymnasium.make(env_id, disable_env_checker=True, **kwargs)
        self._env = wrapped.unwrapped
        spec_steps = wrapped.spec.max_episode_steps if wrapped.spec is not None else None
        self.max_episode_steps = int(spec_steps or 1000)
        obs_shape = self._env.observation_space.shape
        act_space = self._env.action_space
        if obs_shape is None or len(obs_shape) != 1 or act_space.shape is None:
            raise ValueError(f"{env_id}: only flat Box observation/action spaces are supported")
        self.observation_dim = int(obs_shape[0])
        self.action_dim = int(act_space.shape[0])
        self.action_low = np.asarray(act_space.low, dtype=np.float64)  # type: ignore[attr-defined]
        self.action_high = np.asarray(act_space.high, dtype=np.float64)  # type: ignore[attr-defined]
        self.control_hz = 1.0 / float(self._env.dt)  # type: ignore[attr-defined]
        self.observation_names = ("qpos_without_x", "qvel_clipped")
        self._seed = seed

    def _reset(self, seed: int | None) -> np.ndarray:
        if seed is None and self._seed is not None:
            seed, self._seed = self._seed, None
        obs, _ = self._env.reset(seed=seed)
        return np.asarray(obs, dtype=np.float64)

    def _step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        obs, reward, terminated, _truncated, _info = self._env.step(action)
        return np.asarray(obs, dtype=np.float64), float(reward), bool(terminated)

    def _observe(self) -> np.ndarray:
        return np.asarray(self._env._get_obs(), dtype=np.float64)  # type: ignore[attr-defined]

    def _mj(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        return self._env.model, self._env.data  # type: ignore[attr-defined]

    def _default_camera(self) -> int | str:
        model, _ = self._mj()
        return 0 if model.ncam > 0 else -1

    def _close(self) -> None:
        self._env.close()
