"""The one environment interface every simulator adapter implements.

``SimEnv`` follows the gymnasium ``reset``/``step`` contract (``terminated`` and ``truncated``
kept apart) and adds what replay and rendering need: the physics state as a flat float64
vector (``get_physics_state``/``set_physics_state``) and offscreen ``render``. It is a
``controllers.robot.DescribedRobot``: what the controller drives, with its raw I/O named
(``observation_names``/``observation_sizes``, ``actuator_names``) for I/O maps.

Conventions shared by all adapters:

* observations are flat ``float64`` vectors of length ``observation_dim``;
* actions must have shape ``(action_dim,)``, be finite and lie inside
  ``[action_low, action_high]``; anything else raises ``ValueError`` naming the offending value.
  Actions are never clipped silently: clipping is the controller's job, done in the open;
* ``truncated`` becomes true after ``max_episode_steps`` control steps (the time limit),
  ``terminated`` only when the task itself ends the episode (e.g. a gymnasium hopper falls);
* the physics state is MuJoCo's ``mj_getState`` with ``PHYSICS_STATE_SIG`` (time, qpos, qvel,
  act, actuator history, plugin state, qacc_warmstart): setting it and replaying the same
  actions reproduces the trajectory bit for bit.
"""

from __future__ import annotations

import abc
import math
from typing import Any

import mujoco
import numpy as np

PHYSICS_STATE_SIG = int(mujoco.mjtState.mjSTATE_FULLPHYSICS) | int(
    mujoco.mjtState.mjSTATE_WARMSTART
)
"""``mjtState`` bits stored by ``get_physics_state`` (see the module docstring)."""

ACTION_BOUND_TOLERANCE = 1e-6
"""How far (absolute) an action may stray outside its bounds before it is rejected."""

StepResult = tuple[np.ndarray, float, bool, bool, dict[str, Any]]


class SimEnv(abc.ABC):
    """A simulated task with gymnasium-style ``reset``/``step`` and exact physics replay."""

    task: str
    observation_dim: int
    action_dim: int
    action_low: np.ndarray
    action_high: np.ndarray
    control_hz: float
    max_episode_steps: int
    observation_names: tuple[str, ...]
    """One name per observation group, in flattening order (``("qpos", "qvel")`` etc.)."""

    def __init__(self) -> None:
        self._closed = False
        self._needs_reset = True
        self._step_count = 0
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}

    # -- the contract ------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new episode; ``seed`` makes the initial state reproducible."""
        self._check_open()
        obs = self._reset(seed)
        self._needs_reset = False
        self._step_count = 0
        return obs, {"step": 0}

    def step(self, action: np.ndarray) -> StepResult:
        """Apply ``action`` for one control period; see the module docstring for the rules."""
        self._check_open()
        if self._needs_reset:
            raise RuntimeError(f"{self.task}: call reset() before step() (episode is over)")
        checked = validate_action(action, self.action_low, self.action_high)
        obs, reward, terminated = self._step(checked)
        self._step_count += 1
        truncated = not terminated and self._step_count >= self.max_episode_steps
        if terminated or truncated:
            self._needs_reset = True
        return obs, float(reward), bool(terminated), bool(truncated), {"step": self._step_count}

    def get_physics_state(self) -> np.ndarray:
        """The full physics state (float64, length ``physics_dim``)."""
        self._check_open()
        model, data = self._mj()
        state = np.empty(mujoco.mj_stateSize(model, PHYSICS_STATE_SIG), dtype=np.float64)
        mujoco.mj_getState(model, data, state, PHYSICS_STATE_SIG)
        return state

    def set_physics_state(self, state: np.ndarray) -> np.ndarray:
        """Restore a state from ``get_physics_state``; returns the observation there.

        The step counter (and hence the time limit) follows the restored simulation time, so
        an episode can continue from any recorded step.
        """
        self._check_open()
        _, data = self._mj()
        state = np.asarray(state, dtype=np.float64)
        if state.shape != (self.physics_dim,):
            raise ValueError(
                f"{self.task}: physics state must have shape ({self.physics_dim},), "
                f"got {state.shape}"
            )
        self._set_state(state)
        self._step_count = round(float(data.time) * self.control_hz)
        self._needs_reset = self._step_count >= self.max_episode_steps
        return self._observe()

    @property
    def physics_dim(self) -> int:
        model, _ = self._mj()
        return int(mujoco.mj_stateSize(model, PHYSICS_STATE_SIG))

    @property
    def mj_model(self) -> mujoco.MjModel:
        """The MuJoCo model behind the task (read it; change state through the methods)."""
        return self._mj()[0]

    @property
    def mj_data(self) -> mujoco.MjData:
        """The MuJoCo data behind the task (joint velocities, contacts, ...), for reading."""
        return self._mj()[1]

    @property
    def observation_sizes(self) -> tuple[int, ...]:
        """The size of each observation group, in the order of ``observation_names``.

        Read from the MuJoCo model for the groups named after it (``qpos``, ``qvel``,
        ``qpos_without_x``, ``qvel_clipped``); an adapter with other groups overrides this.
        """
        model, _ = self._mj()
        by_name = {
            "qpos": model.nq,
            "qvel": model.nv,
            "qpos_without_x": model.nq - 1,
            "qvel_clipped": model.nv,
        }
        names = self.observation_names
        if len(names) == 1:
            return (int(self.observation_dim),)
        if not all(n in by_name for n in names):
            raise NotImplementedError(
                f"{self.task}: {type(self).__name__} must give the sizes of observation "
                f"groups {names} (override observation_sizes)"
            )
        return tuple(int(by_name[n]) for n in names)

    @property
    def actuator_names(self) -> tuple[str, ...]:
        """One name per action element, in order: the actuator's MJCF name, else the joint it
        drives, else ``actuator<i>``."""
        model, _ = self._mj()
        return tuple(actuator_name(model, i) for i in range(model.nu))

    @property
    def step_count(self) -> int:
        """Control steps taken since the last reset (or implied by a restored state)."""
        return self._step_count

    def render(self, width: int = 320, height: int = 240, camera: int | str = -1) -> np.ndarray:
        """An RGB frame ``(height, width, 3)`` uint8 of the current state (offscreen)."""
        self._check_open()
        model, data = self._mj()
        key = (width, height)
        if key not in self._renderers:
            self._renderers[key] = mujoco.Renderer(model, height=height, width=width)
        renderer = self._renderers[key]
        cam = self._default_camera() if camera == -1 else camera
        renderer.update_scene(data, camera=cam)
        return renderer.render()

    def close(self) -> None:
        """Release the simulator; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()
        self._close()

    def __enter__(self) -> SimEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(task={self.task!r}, obs={self.observation_dim}, "
            f"act={self.action_dim}, control_hz={self.control_hz:g})"
        )

    # -- what adapters implement ---------------------------------------------------------
    @abc.abstractmethod
    def _reset(self, seed: int | None) -> np.ndarray: ...

    @abc.abstractmethod
    def _step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]: ...

    @abc.abstractmethod
    def _observe(self) -> np.ndarray: ...

    @abc.abstractmethod
    def _mj(self) -> tuple[mujoco.MjModel, mujoco.MjData]: ...

    def _set_state(self, state: np.ndarray) -> None:
        model, data = self._mj()
        mujoco.mj_setState(model, data, state, PHYSICS_STATE_SIG)
        mujoco.mj_forward(model, data)

    def _default_camera(self) -> int | str:
        return -1

    def _close(self) -> None:
        return None

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self.task}: environment is closed")


def validate_action(action: Any, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Return ``action`` as float64 or raise ``ValueError`` saying exactly what is wrong."""
    arr = np.asarray(action, dtype=np.float64)
    if arr.shape != low.shape:
        raise ValueError(f"action must have shape {low.shape}, got {arr.shape}: {arr!r}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"action[{i}] is {arr[i]} (not finite): {arr!r}")
    outside = (arr < low - ACTION_BOUND_TOLERANCE) | (arr > high + ACTION_BOUND_TOLERANCE)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"action[{i}]={arr[i]:.6g} is outside its bounds [{low[i]:.6g}, {high[i]:.6g}] "
            "(actions are never clipped silently; clip in the controller)"
        )
    return arr


def actuator_name(model: mujoco.MjModel, i: int) -> str:
    """Actuator ``i``'s name, else the joint it drives (unnamed MJCF motors), else its index."""
    if model.actuator(i).name:
        return str(model.actuator(i).name)
    if int(model.actuator_trntype[i]) == int(mujoco.mjtTrn.mjTRN_JOINT):
        joint = model.joint(int(model.actuator_trnid[i, 0])).name
        if joint:
            return str(joint)
    return f"actuator{i}"


def steps_for(time_limit_s: float, control_hz: float) -> int:
    """Control steps in a time limit, robust to float rounding (20 s at 40 Hz -> 800)."""
    return math.floor(time_limit_s * control_hz + 1e-9)
