"""Raw MJCF scenes behind ``SimEnv``, with no suite or gymnasium in between.

``MujocoEnv`` loads any MJCF (an XML string or a file path). Observation: ``qpos`` then
``qvel``. Action: ``ctrl`` with the actuators' ``ctrlrange`` as bounds (actuators must be
``ctrllimited``, since actions outside the bounds are rejected, never clipped). Reward:
``reward_fn(model, data)`` if given, else 0. Reset: the model's initial state (keyframe 0 if it
has one) plus uniform noise of ``reset_noise`` on qpos and qvel, drawn from the seeded RNG.

``POINT_MASS_XML`` is the tiny inline scene registered as ``mujoco-pointmass``: a point mass on
a plane, driven by two motors, rewarded for staying close to the origin.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import mujoco
import numpy as np

from sim.env import SimEnv, steps_for

logger = logging.getLogger(__name__)

RewardFn = Callable[[mujoco.MjModel, mujoco.MjData], float]

POINT_MASS_XML = """
<mujoco model="pointmass">
  <option timestep="0.01"/>
  <worldbody>
    <light pos="0 0 3"/>
    <geom name="floor" type="plane" size="1 1 0.1" rgba=".4 .5 .6 1"/>
    <camera name="top" pos="0 0 2" xyaxes="1 0 0 0 1 0"/>
    <body name="mass" pos="0 0 0.05">
      <joint name="x" type="slide" axis="1 0 0" damping="0.5" range="-0.9 0.9" limited="true"/>
      <joint name="y" type="slide" axis="0 1 0" damping="0.5" range="-0.9 0.9" limited="true"/>
      <geom name="ball" type="sphere" size="0.05" mass="0.3" rgba=".9 .4 .1 1"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="x" gear="1" ctrlrange="-1 1" ctrllimited="true"/>
    <motor joint="y" gear="1" ctrlrange="-1 1" ctrllimited="true"/>
  </actuator>
</mujoco>
"""


def point_mass_reward(model: mujoco.MjModel, data: mujoco.MjData) -> float:
    """1 at the origin, falling off with the distance (in [0, 1])."""
    distance = float(np.linalg.norm(data.qpos[:2]))
    return float(np.exp(-4.0 * distance))


class MujocoEnv(SimEnv):
    """An MJCF model stepped directly with ``mujoco.mj_step``."""

    def __init__(
        self,
        task: str,
        xml: str | Path,
        control_hz: float | None = None,
        time_limit_s: float = 10.0,
        reward_fn: RewardFn | None = None,
        reset_noise: float = 0.1,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.task = task
        if isinstance(xml, Path) or (isinstance(xml, str) and not xml.lstrip().startswith("<")):
            self._model = mujoco.MjModel.from_xml_path(str(xml))
        else:
            self._model = mujoco.MjModel.from_xml_string(xml)
        self._data = mujoco.MjData(self._model)
        model = self._model
        if model.nu == 0:
            raise ValueError(f"{task}: the MJCF has no actuators, so it cannot take actions")
        if not np.all(model.actuator_ctrllimited):
            raise ValueError(f"{task}: every actuator needs ctrllimited='true' and a ctrlrange")
        substeps_hz = 1.0 / model.opt.timestep
        control_hz = substeps_hz if control_hz is None else control_hz
        self._n_substeps = max(1, round(substeps_hz / control_hz))
        self.control_hz = substeps_hz / self._n_substeps
        self.max_episode_steps = steps_for(time_limit_s, self.control_hz)
        self.action_dim = int(model.nu)
        self.action_low = model.actuator_ctrlrange[:, 0].astype(np.float64).copy()
        self.action_high = model.actuator_ctrlrange[:, 1].astype(np.float64).copy()
        self.observation_dim = int(model.nq + model.nv)
        self.observation_names = ("qpos", "qvel")
        self._reward_fn = reward_fn
        self._reset_noise = float(reset_noise)
        self._rng = np.random.default_rng(seed)

    def _reset(self, seed: int | None) -> np.ndarray:
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        model, data = self._model, self._data
        if model.nkey > 0:
            mujoco.mj_resetDataKeyframe(model, data, 0)
        else:
            mujoco.mj_resetData(model, data)
        noise = self._reset_noise
        data.qpos[:] += self._rng.uniform(-noise, noise, size=model.nq)
        data.qvel[:] += self._rng.uniform(-noise, noise, size=model.nv)
        mujoco.mj_forward(model, data)
        return self._observe()

    def _step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        self._data.ctrl[:] = action
        mujoco.mj_step(self._model, self._data, self._n_substeps)
        reward = 0.0 if self._reward_fn is None else self._reward_fn(self._model, self._data)
        return self._observe(), reward, False

    def _observe(self) -> np.ndarray:
        return np.concatenate([self._data.qpos, self._data.qvel]).astype(np.float64)

    def _mj(self) -> tuple[mujoco.MjModel, mujoco.MjData]:
        return self._model, self._data

    def _default_camera(self) -> int | str:
        return 0 if self._model.ncam > 0 else -1
