"""dm_control suite tasks behind ``SimEnv``.

Observation dicts are flattened in a fixed order: the order of ``observation_keys`` given at
construction (the registry passes each task's documented order, which is the suite's own
order), each entry raveled (scalars become one value). If the suite ever returns other keys
the adapter refuses to run rather than silently reorder. Every registered suite task runs
1,000 control steps per episode (the suite's default time limit), counted by the ``SimEnv``
step counter (``max_episode_steps``), so ``truncated`` marks the time limit and
``terminated`` only a task's own termination.
"""

from __future__ import annotations

import logging

import mujoco
import numpy as np

from sim.env import SimEnv

logger = logging.getLogger(__name__)


class DmControlEnv(SimEnv):
    """A dm_control suite ``domain-task`` as a ``SimEnv``."""

    def __init__(
        self,
        task: str,
        domain: str,
        task_name: str,
        observation_keys: tuple[str, ...],
        max_episode_steps: int = 1000,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        from dm_control import suite  # imported lazily: importing sim must stay cheap

        self.task = task
        self._env = suite.load(
            domain,
            task_name,
            task_kwargs={"random": np.random.RandomState(seed), "time_limit": float("inf")},
        )
        self.observation_names = tuple(observation_keys)
        spec = self._env.action_spec()
        self.action_dim = int(spec.shape[0])
        self.action_low = np.asarray(spec.minimum, dtype=np.float64).reshape(self.action_dim)
        self.action_high = np.asarray(spec.maximum, dtype=np.float64).reshape(self.action_dim)
        self.control_hz = 1.0 / float(self._env.control_timestep())
        self.max_episode_steps = int(max_episode_steps)
        obs_spec = self._env.observation_spec()
        if tuple(obs_spec) != self.observation_names:
            raise ValueError(
                f"{task}: dm_control observation keys are {tuple(obs_spec)}, "
                f"expected {self.observation_names}"
            )
        self._sizes = [int(np.prod(obs_spec[k].shape)) for k in self.observation_names]
        self.observation_dim = int(sum(self._sizes))

    @property
    def observation_sizes(self) -> tuple[int, ...]:
        return tuple(self._sizes)

    def _flatten(self, observation: dict[str, np.ndarray]) -> np.ndarray:
        keys = tuple(observation)
        if keys != self.observation_names:
            raise RuntimeError(
                f"{self.task}: observation keys changed to {keys}, "
                f"expected {self.observation_names}"
            )
        return np.concatenate([np.asarray(observation[k], dtype=np.float64).ravel() for k in keys])

    def _reset(self, seed: int | None) -> np.ndarray:
        if seed is not None:
            # The suite draws initial states from task.random; reseeding it makes reset(seed)
            # reproducible without rebuilding the environment.
            self._env.task._random = np.random.RandomState(seed)
        timestep = self._env.reset()
        return self._flatten(timestep.observation)

    def _step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        timestep = self._env.step(action)
        reward = 0.0 if timestep.reward is None else float(timestep.reward)
        # With an infinite suite time limit, LAST can only mean the task terminated.
        return self._flatten(timestep.observation), reward, bool(timestep.last())

    def _observe(self) -> np.ndarray:
        return self._flatten(self._env.task.get_observation(self._env.physics))

    def _mj(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        physics = self._env.physics
        return physics.model.ptr, physics.data.ptr

    def _default_camera(self) -> int | str:
        # Suite domains define a tracking camera 0 that keeps the body in view.
        model, _ = self._mj()
        return 0 if model.ncam > 0 else -1

    def _close(self) -> None:
        self._env.close()
