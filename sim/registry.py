"""The task registry: every simulated task by name, its factory and its reference returns.

Names follow ``domain-task`` (``walker-walk``); a bare domain resolves to its default task
(``walker`` -> ``walker-walk``). Gymnasium ids keep their own spelling (``Walker2d-v5``), matched
case-insensitively. Any MJCF file is reachable as ``mjcf:/path/to/scene.xml``.

Reference returns give the normalised score ``100 * (R - random) / (expert - random)`` (D4RL's
convention). Each carries the source of its numbers; see ``docs/datasets.md``.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mtm_robot.errors import UnknownTaskError
from sim.env import SimEnv


@dataclass(frozen=True)
class ReferenceReturns:
    """Episode returns that anchor the normalised score of a task."""

    random: float
    expert: float
    source: str

    def __post_init__(self) -> None:
        if not self.expert > self.random:
            raise ValueError(f"expert return {self.expert} must exceed random {self.random}")


@dataclass(frozen=True)
class TaskSpec:
    """One registered task: how to build it and how to score it."""

    name: str
    backend: str  # "dm_control" | "gymnasium" | "mujoco"
    factory: Callable[..., SimEnv] = field(repr=False)
    reference: ReferenceReturns | None = None
    description: str = ""

    def make(self, seed: int | None = None, **kwargs: Any) -> SimEnv:
        return self.factory(task=self.name, seed=seed, **kwargs)


# Observation-dict key order of each dm_control task: the suite's own order, pinned here so a
# change upstream fails loudly instead of silently permuting stored datasets.
DM_CONTROL_OBSERVATION_KEYS: dict[str, tuple[str, ...]] = {
    "walker": ("orientations", "height", "velocity"),
    "cheetah": ("position", "velocity"),
    "hopper": ("position", "velocity", "touch"),
    "cartpole": ("position", "velocity"),
    "reacher": ("position", "to_target", "velocity"),
    "quadruped": ("egocentric_state", "torso_velocity", "torso_upright", "imu", "force_torque"),
}

_DMC_RANDOM_SOURCE = (
    "random: mean over 20 uniform-random episodes, seeds 0-19 "
    "(python -m sim.references, docs/datasets.md); expert: the suite's maximum return "
    "(1000 steps x reward <= 1), until an expert for the task is shipped"
)
_D4RL_SOURCE = (
    "D4RL reference scores (Fu et al. 2020, d4rl/infos.py) for the -v2 environments; the "
    "-v5 dynamics are the same models"
)

_TASKS: dict[str, TaskSpec] = {}
_DEFAULT_TASK: dict[str, str] = {}


def register(spec: TaskSpec, default_for_domain: bool = False) -> None:
    """Add a task; ``default_for_domain`` makes its domain name resolve to it."""
    if spec.name in _TASKS:
        raise ValueError(f"task {spec.name!r} is already registered")
    _TASKS[spec.name] = spec
    if default_for_domain:
        _DEFAULT_TASK[spec.name.split("-")[0]] = spec.name


def _make_dm_control(task: str, seed: int | None = None, **kwargs: Any) -> SimEnv:
    from sim.dm_control_env import DmControlEnv

    domain, task_name = task.split("-", 1)
    return DmControlEnv(
        task,
        domain,
        task_name,
        DM_CONTROL_OBSERVATION_KEYS[domain],
        seed=seed,
        **kwargs,
    )


def _make_gymnasium(env_id: str, task: str, seed: int | None = None, **kwargs: Any) -> SimEnv:
    from sim.gymnasium_env import GymnasiumEnv

    return GymnasiumEnv(task, env_id, seed=seed, **kwargs)


def _make_point_mass(task: str, seed: int | None = None, **kwargs: Any) -> SimEnv:
    from sim.mujoco_env import POINT_MASS_XML, MujocoEnv, point_mass_reward

    options: dict[str, Any] = {"control_hz": 50.0, "time_limit_s": 4.0}
    options.update(kwargs)
    return MujocoEnv(task, POINT_MASS_XML, reward_fn=point_mass_reward, seed=seed, **options)


def _make_mjcf_file(task: str, seed: int | None = None, **kwargs: Any) -> SimEnv:
    from sim.mujoco_env import MujocoEnv

    return MujocoEnv(task, task.split(":", 1)[1], seed=seed, **kwargs)


# (name, default for its domain, mean random return measured by `python -m sim.references`)
_DMC_TASKS: tuple[tuple[str, bool, float], ...] = (
    ("walker-walk", True, 31.594),
    ("walker-run", False, 22.839),
    ("cheetah-run", True, 3.633),
    ("hopper-hop", True, 0.031),
    ("hopper-stand", False, 1.726),
    ("cartpole-swingup", True, 26.474),
    ("reacher-easy", True, 27.600),
    ("quadruped-walk", True, 177.224),
)
for _name, _default, _random in _DMC_TASKS:
    register(
        TaskSpec(
            _name,
            "dm_control",
            _make_dm_control,
            ReferenceReturns(random=_random, expert=1000.0, source=_DMC_RANDOM_SOURCE),
            f"dm_control suite {_name}",
        ),
        default_for_domain=_default,
    )

# D4RL references: (random, expert) from d4rl/infos.py REF_MIN_SCORE / REF_MAX_SCORE.
_GYM_TASKS: tuple[tuple[str, float, float], ...] = (
    ("Walker2d-v5", 1.629008, 4592.3),
    ("Hopper-v5", -20.272305, 3234.3),
    ("HalfCheetah-v5", -280.178953, 12135.0),
)
for _env_id, _random, _expert in _GYM_TASKS:
    register(
        TaskSpec(
            _env_id,
            "gymnasium",
            functools.partial(_make_gymnasium, _env_id),
            ReferenceReturns(random=_random, expert=_expert, source=_D4RL_SOURCE),
            f"gymnasium MuJoCo {_env_id} (D4RL locomotion)",
        )
    )

register(
    TaskSpec(
        "mujoco-pointmass",
        "mujoco",
        _make_point_mass,
        None,
        "inline MJCF point mass on a plane (tests, examples)",
    ),
    default_for_domain=True,
)


def known_tasks() -> list[str]:
    """Every registered task name, in registration order."""
    return list(_TASKS)


def resolve(task: str) -> str:
    """The canonical name of ``task`` (``walker`` -> ``walker-walk``); raises ``UnknownTaskError``
    (a ``KeyError``) listing the known tasks."""
    if task in _TASKS:
        return task
    if task in _DEFAULT_TASK:
        return _DEFAULT_TASK[task]
    by_lower = {name.lower(): name for name in _TASKS}
    if task.lower() in by_lower:
        return by_lower[task.lower()]
    candidates = list(_TASKS) + list(_DEFAULT_TASK)
    near = difflib.get_close_matches(task, candidates, n=1, cutoff=0.5)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    raise UnknownTaskError(
        f"unknown task {task!r}.{hint} Known tasks: {', '.join(_TASKS)} "
        f"(domains: {', '.join(sorted(_DEFAULT_TASK))}; any MJCF file as 'mjcf:PATH')"
    )


def task_spec(task: str) -> TaskSpec:
    """The ``TaskSpec`` of ``task`` (aliases resolved; ``mjcf:PATH`` built on the fly)."""
    if task.startswith("mjcf:"):
        return TaskSpec(task, "mujoco", _make_mjcf_file, None, f"MJCF file {task[5:]}")
    return _TASKS[resolve(task)]


def make(task: str, seed: int | None = None, **kwargs: Any) -> SimEnv:
    """Build the environment of ``task`` (``seed`` seeds its first ``reset()``)."""
    return task_spec(task).make(seed=seed, **kwargs)


def normalized_score(task: str, episode_return: float) -> float:
    """``100 * (R - random) / (expert - random)`` with the task's reference returns."""
    reference = task_spec(task).reference
    if reference is None:
        raise KeyError(f"task {task!r} has no reference returns")
    return 100.0 * (episode_return - reference.random) / (reference.expert - reference.random)
