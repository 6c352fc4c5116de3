"""What the controller needs of a robot: the one interface a simulator or a real robot implements.

A :class:`Robot` follows the gymnasium ``reset``/``step`` contract (``terminated`` and
``truncated`` kept apart) with flat float vectors, and says its action bounds and its control
rate. Nothing in it is MuJoCo: the simulator adapters (``sim.env.SimEnv``) implement it, and so
does a real robot's driver or a plain-Python plant (``tests/controllers/test_robot_interface.py``
runs the whole controller and node path on one).

Two parts are optional:

* the **physics state** (``get_physics_state``): a simulator returns a flat float64 vector
  that replays and renders the step; a real robot returns ``None``. The controller asks for it
  only when something keeps it (a recorder, or a session asked for it), not every tick;
* the **raw I/O description** (:class:`DescribedRobot`: observation field names and sizes,
  actuator names), which an I/O map (:mod:`controllers.io_map`) is checked against.

Actions reaching :meth:`Robot.step` are already clipped and rate-limited by the controller
(:mod:`controllers.safety`); a robot may still refuse one outside its bounds (``SimEnv`` raises),
but never clips silently.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

StepResult = tuple[np.ndarray, float | None, bool, bool, dict[str, Any]]
"""``(observation, reward or None when the robot has none, terminated, truncated, info)``."""


@runtime_checkable
class Robot(Protocol):
    """A robot (or simulator) as the fixed-rate controller drives it."""

    @property
    def task(self) -> str: ...  # the task a model for it was trained on (episode metadata)
    @property
    def observation_dim(self) -> int: ...
    @property
    def action_dim(self) -> int: ...
    @property
    def action_low(self) -> np.ndarray: ...  # (action_dim,) float64
    @property
    def action_high(self) -> np.ndarray: ...
    @property
    def control_hz(self) -> float: ...  # the rate the robot expects commands at

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; returns ``(observation, info)``."""
        ...

    def step(self, action: np.ndarray) -> StepResult:
        """Apply ``action`` for one control period; returns the next observation."""
        ...

    def get_physics_state(self) -> np.ndarray | None:
        """The state that replays this step (a simulator), or ``None`` (a real robot)."""
        ...

    def close(self) -> None:
        """Release the robot; safe to call more than once."""
        ...


@runtime_checkable
class DescribedRobot(Robot, Protocol):
    """A robot that names its raw I/O, so an I/O map can be checked against it."""

    @property
    def observation_names(self) -> tuple[str, ...]: ...  # one per field, in flattening order
    @property
    def observation_sizes(self) -> tuple[int, ...]: ...  # the fields' sizes, same order
    @property
    def actuator_names(self) -> tuple[str, ...]: ...  # one per action element, in order
