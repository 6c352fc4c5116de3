"""I/O maps: how a robot's raw observation becomes the model's state, and the model's action
becomes actuator commands.

An :class:`IOMap` is a dataclass; YAML is its serialisation (:func:`load_io_map`). One
convention for both directions, element by element::

    state[k]   = scale * raw_field[index] + offset      (observation -> model state)
    command[a] = scale * action[i]        + offset      (model action -> actuator a)

The model's state is the concatenation of the ``state`` blocks in order; the model's action
``i`` is the ``i``-th ``action`` entry. Raw observations come as named fields
(``raw_observation``, in the robot's order); commands go to the ``actuators`` list (the robot's
command vector, in order). An actuator no model action drives is held at the middle of its
range.

:class:`MappedEnv` is the one place a map is applied: it wraps an environment so that the
controller sees the model's state and sends the model's actions, with the action bounds and
per-tick rate limit of the map expressed in model units, so the controller's safety limits
(:mod:`controllers.safety`) stay the one place where actions are clipped. A mapped robot is a
:class:`~controllers.robot.Robot` like any other.

Runtime code, beside the controller: a session applies a map with this module alone (pure
numpy, no simulator, no model). Calibration (:mod:`calibration.io_check`,
:mod:`calibration.procedures`) builds on it to check maps against a simulator and write them.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from controllers.robot import DescribedRobot, Robot, StepResult
from mtm_robot.config import load_config, save_config
from mtm_robot.errors import ConfigError, SpecMismatchError

log = logging.getLogger(__name__)


def _hint(name: str, valid: Sequence[str]) -> str:
    near = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" (did you mean '{near[0]}'?)" if near else ""


@dataclass
class RawField:
    """One field of the robot's raw observation."""

    name: str
    size: int = 1
    units: str = ""  # the robot's units, for the reader (e.g. "deg", "rad/s")


@dataclass
class StateBlock:
    """A run of consecutive model state elements read from one raw field."""

    field: str  # the raw observation field this block reads
    indices: list[int] | None = None  # elements of the field, in order (None: all of them)
    scale: float | list[float] = 1.0  # state = scale * raw + offset, scalar or per element
    offset: float | list[float] = 0.0
    units: str = ""  # the model's units after scaling (e.g. "rad")


@dataclass
class ActionChannel:
    """Where one model action goes: ``command[actuator] = scale * action + offset``."""

    actuator: str  # the robot's actuator (a name in ``IOMap.actuators``)
    scale: float = 1.0
    offset: float = 0.0
    low: float | None = None  # command limits (None: the actuator's own range)
    high: float | None = None
    max_delta: float | None = None  # per-tick rate limit in command units (None: none)
    units: str = ""


@dataclass
class IOMap:
    """The full map between a robot's raw I/O and a model's state and action vectors."""

    task: str = ""  # the task whose model this map feeds (documentation and checks)
    raw_observation: list[RawField] = field(default_factory=list)
    actuators: list[str] = field(default_factory=list)  # the robot's command vector, in order
    state: list[StateBlock] = field(default_factory=list)
    action: list[ActionChannel] = field(default_factory=list)

    def __post_init__(self) -> None:
        sizes: dict[str, int] = {}
        for f in self.raw_observation:
            if f.name in sizes:
                raise ConfigError(f"raw_observation: field '{f.name}' is listed twice")
            if f.size < 1:
                raise ConfigError(f"raw_observation.{f.name}: size must be >= 1, got {f.size}")
            sizes[f.name] = f.size
        for k, block in enumerate(self.state):
            where = f"state[{k}]"
            if block.field not in sizes:
                raise ConfigError(
                    f"{where}.field '{block.field}' is not a raw observation field "
                    f"{list(sizes)}{_hint(block.field, list(sizes))}"
                )
            idx = self._indices(block, sizes[block.field])
            bad = [i for i in idx if not 0 <= i < sizes[block.field]]
            if bad:
                raise ConfigError(
                    f"{where}.indices {bad} are outside field '{block.field}' "
                    f"(size {sizes[block.field]})"
                )
            for name in ("scale", "offset"):
                value = getattr(block, name)
                if isinstance(value, list) and len(value) != len(idx):
                    raise ConfigError(
                        f"{where}.{name} has {len(value)} values, the block has {len(idx)}"
                    )
            if np.any(np.asarray(block.scale, dtype=np.float64) == 0):
                raise ConfigError(f"{where}.scale must not be 0, got {block.scale}")
        if len(set(self.actuators)) != len(self.actuators):
            dup = sorted({a for a in self.actuators if self.actuators.count(a) > 1})
            raise ConfigError(f"actuators: {dup} listed more than once")
        driven: dict[str, int] = {}
        for i, ch in enumerate(self.action):
            where = f"action[{i}]"
            if ch.actuator not in self.actuators:
                raise ConfigError(
                    f"{where}.actuator '{ch.actuator}' is not in actuators "
                    f"{self.actuators}{_hint(ch.actuator, self.actuators)}"
                )
            if ch.actuator in driven:
                raise ConfigError(
                    f"actuator '{ch.actuator}' is driven by both action[{driven[ch.actuator]}] "
                    f"and {where}"
                )
            driven[ch.actuator] = i
            if ch.scale == 0:
                raise ConfigError(f"{where}.scale must not be 0 ('{ch.actuator}')")
            if ch.low is not None and ch.high is not None and not ch.low < ch.high:
                raise ConfigError(
                    f"{where} ('{ch.actuator}'): low {ch.low} must be below high {ch.high}"
                )
            if ch.max_delta is not None and not ch.max_delta > 0:
                raise ConfigError(f"{where}.max_delta must be > 0, got {ch.max_delta}")

    # -- shape ------------------------------------------------------------------------------
    @staticmethod
    def _indices(block: StateBlock, size: int) -> list[int]:
        return list(range(size)) if block.indices is None else list(block.indices)

    @property
    def field_sizes(self) -> dict[str, int]:
        return {f.name: f.size for f in self.raw_observation}

    @property
    def raw_dim(self) -> int:
        return sum(f.size for f in self.raw_observation)

    @property
    def state_dim(self) -> int:
        sizes = self.field_sizes
        return sum(len(self._indices(b, sizes[b.field])) for b in self.state)

    @property
    def action_dim(self) -> int:
        return len(self.action)

    def state_names(self) -> list[str]:
        """A name per model state element: ``field[index]`` (just ``field`` for size 1)."""
        sizes = self.field_sizes
        names = []
        for b in self.state:
            for i in self._indices(b, sizes[b.field]):
                names.append(b.field if sizes[b.field] == 1 else f"{b.field}[{i}]")
        return names

    # -- observation -> state ----------------------------------------------------------------
    def split_raw(self, raw: np.ndarray) -> dict[str, np.ndarray]:
        """A flat raw observation (the fields concatenated in order) as named fields."""
        flat = np.asarray(raw, dtype=np.float64).ravel()
        if flat.shape[0] != self.raw_dim:
            raise SpecMismatchError(
                f"raw observation has {flat.shape[0]} values, the I/O map's fields "
                f"{self._layout()} have {self.raw_dim}"
            )
        out, start = {}, 0
        for f in self.raw_observation:
            out[f.name] = flat[start : start + f.size]
            start += f.size
        return out

    def state_from_fields(self, fields: Mapping[str, Any]) -> np.ndarray:
        """The model's state from named raw fields (extra fields are ignored)."""
        sizes = self.field_sizes
        parts = []
        for k, b in enumerate(self.state):
            if b.field not in fields:
                raise SpecMismatchError(f"state[{k}]: raw field '{b.field}' is missing")
            raw = np.asarray(fields[b.field], dtype=np.float64).ravel()
            if raw.shape[0] != sizes[b.field]:
                raise SpecMismatchError(
                    f"raw field '{b.field}' has {raw.shape[0]} values, "
                    f"the I/O map says {sizes[b.field]}"
                )
            idx = self._indices(b, sizes[b.field])
            scale = np.asarray(b.scale, dtype=np.float64)
            offset = np.asarray(b.offset, dtype=np.float64)
            parts.append(scale * raw[idx] + offset)
        return np.concatenate(parts) if parts else np.zeros(0)

    def state_from_raw(self, raw: np.ndarray) -> np.ndarray:
        return self.state_from_fields(self.split_raw(raw))

    # -- action -> command ------------------------------------------------------------------
    def _channel_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        slots = np.array([self.actuators.index(ch.actuator) for ch in self.action], dtype=int)
        scale = np.array([ch.scale for ch in self.action], dtype=np.float64)
        offset = np.array([ch.offset for ch in self.action], dtype=np.float64)
        return slots, scale, offset

    def command_from_action(self, action: np.ndarray, idle_command: np.ndarray) -> np.ndarray:
        """The actuator command vector for a model action; undriven actuators get
        ``idle_command``. Does not clip: the controller's safety limits keep actions inside
        :meth:`action_bounds`, which map inside the actuators' limits."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.action_dim,):
            raise ValueError(f"model action must have shape ({self.action_dim},), got {a.shape}")
        command = np.array(idle_command, dtype=np.float64, copy=True)
        slots, scale, offset = self._channel_arrays()
        command[slots] = scale * a + offset
        return command

    def command_limits(
        self, actuator_low: np.ndarray, actuator_high: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per model action, the command limits: the map's, else the actuator's range."""
        slots, _, _ = self._channel_arrays()
        low = np.array([np.nan if ch.low is None else ch.low for ch in self.action])
        high = np.array([np.nan if ch.high is None else ch.high for ch in self.action])
        low = np.where(np.isnan(low), np.asarray(actuator_low, np.float64)[slots], low)
        high = np.where(np.isnan(high), np.asarray(actuator_high, np.float64)[slots], high)
        return low, high

    def action_bounds(
        self, actuator_low: np.ndarray, actuator_high: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The model-action bounds whose commands stay inside the command limits."""
        low, high = self.command_limits(actuator_low, actuator_high)
        _, scale, offset = self._channel_arrays()
        a, b = (low - offset) / scale, (high - offset) / scale
        return np.minimum(a, b), np.maximum(a, b)

    def max_action_delta(self) -> float | None:
        """The tightest per-tick rate limit in model-action units (None when none is set).

        The controller's rate limit is one number for all actions, so per-actuator limits
        become their minimum (conservative for every other actuator).
        """
        limits = [ch.max_delta / abs(ch.scale) for ch in self.action if ch.max_delta is not None]
        return min(limits) if limits else None

    # -- checks ------------------------------------------------------------------------------
    def _layout(self) -> str:
        return " ".join(f"{f.name}({f.size})" for f in self.raw_observation)

    def check_env(
        self, field_sizes: Sequence[tuple[str, int]], actuator_names: Sequence[str], task: str
    ) -> None:
        """Raise :class:`SpecMismatchError` with a diff when the map's raw side does not
        match a robot or simulator (its observation fields and actuators, in order)."""
        problems = []
        mine = [(f.name, f.size) for f in self.raw_observation]
        theirs = [(n, int(s)) for n, s in field_sizes]
        if mine != theirs:
            problems.append(
                "raw observation fields differ:\n"
                f"    map:  {' '.join(f'{n}({s})' for n, s in mine)}\n"
                f"    task: {' '.join(f'{n}({s})' for n, s in theirs)}"
            )
        if list(self.actuators) != list(actuator_names):
            missing = [a for a in actuator_names if a not in self.actuators]
            unknown = [a for a in self.actuators if a not in actuator_names]
            detail = []
            if missing:
                detail.append(f"missing {missing}")
            if unknown:
                detail.append(f"unknown {unknown}")
            if not detail:
                detail.append("same names in another order")
            problems.append(
                f"actuators differ ({', '.join(detail)}):\n"
                f"    map:  {list(self.actuators)}\n    task: {list(actuator_names)}"
            )
        if problems:
            raise SpecMismatchError(
                f"I/O map does not fit task '{task}':\n  " + "\n  ".join(problems)
            )

    def check_model(self, metadata: Mapping[str, Any]) -> None:
        """Raise :class:`SpecMismatchError` with a diff when the map's model side does not
        match a model's spec (node metadata, or a checkpoint's metadata)."""
        dims = metadata.get("modalities") or (metadata.get("data_spec") or {}).get("modalities")
        if not dims:
            raise SpecMismatchError("model metadata has no modalities: cannot check the I/O map")
        model = metadata.get("model_id", "?")
        problems = []
        if dims.get("states") != self.state_dim:
            sizes = self.field_sizes
            blocks = ", ".join(
                f"{b.field} {len(self._indices(b, sizes[b.field]))}" for b in self.state
            )
            problems.append(
                f"states: the map builds {self.state_dim} values ({blocks}), "
                f"model '{model}' expects {dims.get('states')}"
            )
        if dims.get("actions") != self.action_dim:
            problems.append(
                f"actions: the map has {self.action_dim} channels "
                f"({', '.join(ch.actuator for ch in self.action)}), "
                f"model '{model}' produces {dims.get('actions')}"
            )
        if problems:
            raise SpecMismatchError("I/O map does not fit the model:\n  " + "\n  ".join(problems))

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def identity(
        cls, task: str, field_sizes: Sequence[tuple[str, int]], actuator_names: Sequence[str]
    ) -> IOMap:
        """The map of a simulator onto a model trained on it: every field and actuator in
        the simulator's own order, unit scale, no offset."""
        return cls(
            task=task,
            raw_observation=[RawField(n, int(s)) for n, s in field_sizes],
            actuators=list(actuator_names),
            state=[StateBlock(n) for n, _ in field_sizes],
            action=[ActionChannel(a) for a in actuator_names],
        )


def load_io_map(path: str | Path, overrides: Sequence[str] = ()) -> IOMap:
    """Read an I/O map YAML file (unknown keys are errors naming the nearest valid key)."""
    return load_config(IOMap, path, list(overrides))


def save_io_map(io_map: IOMap, path: str | Path) -> None:
    save_config(io_map, path)


# -- applying a map to a robot ------------------------------------------------------------------
class MappedEnv:
    """``env`` seen through ``io_map``: the model's state out, the model's action in.

    ``field_sizes`` and ``actuator_names`` describe the raw side of ``env`` (see
    :func:`describe_env`); the map is checked against them before anything runs. Closing the
    mapped robot closes ``env``.
    """

    def __init__(
        self,
        env: Robot,
        io_map: IOMap,
        field_sizes: Sequence[tuple[str, int]],
        actuator_names: Sequence[str],
    ) -> None:
        io_map.check_env(field_sizes, actuator_names, env.task)
        self.env = env
        self.io_map = io_map
        self.task = env.task
        self.control_hz = env.control_hz
        self.observation_dim = io_map.state_dim
        self.action_dim = io_map.action_dim
        raw_low = np.asarray(env.action_low, np.float64)
        raw_high = np.asarray(env.action_high, np.float64)
        limit_low, limit_high = io_map.command_limits(raw_low, raw_high)
        slots, _, _ = io_map._channel_arrays()
        outside = (limit_low < raw_low[slots] - 1e-12) | (limit_high > raw_high[slots] + 1e-12)
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise SpecMismatchError(
                f"I/O map action[{i}] ('{io_map.action[i].actuator}'): command limits "
                f"[{limit_low[i]:g}, {limit_high[i]:g}] exceed the actuator's range "
                f"[{raw_low[slots[i]]:g}, {raw_high[slots[i]]:g}]"
            )
        self.action_low, self.action_high = io_map.action_bounds(raw_low, raw_high)
        self.idle_command = (raw_low + raw_high) / 2
        self.max_action_delta = io_map.max_action_delta()

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        raw, info = self.env.reset(seed=seed)
        return self.io_map.state_from_raw(raw), info

    def step(self, action: np.ndarray) -> StepResult:
        command = self.io_map.command_from_action(action, self.idle_command)
        raw, reward, terminated, truncated, info = self.env.step(command)
        return self.io_map.state_from_raw(raw), reward, terminated, truncated, info

    def get_physics_state(self) -> np.ndarray | None:
        return self.env.get_physics_state()

    def close(self) -> None:
        self.env.close()


def describe_env(env: Robot) -> tuple[list[tuple[str, int]], list[str]]:
    """The raw side of a robot: (observation fields with their sizes, actuator names).

    Read from the robot's public description (:class:`~controllers.robot.DescribedRobot`:
    ``observation_names``, ``observation_sizes``, ``actuator_names``); every simulator adapter
    provides it.
    """
    if not isinstance(env, DescribedRobot):
        raise SpecMismatchError(
            f"{env.task}: an I/O map needs the robot's raw I/O described: give it "
            "observation_names, observation_sizes and actuator_names (controllers.robot."
            "DescribedRobot)"
        )
    names, sizes = list(env.observation_names), list(env.observation_sizes)
    if len(names) != len(sizes):
        raise SpecMismatchError(
            f"{env.task}: {len(names)} observation names {names} but {len(sizes)} sizes {sizes}"
        )
    fields = [(str(n), int(s)) for n, s in zip(names, sizes, strict=True)]
    if sum(s for _, s in fields) != env.observation_dim:
        raise SpecMismatchError(
            f"{env.task}: observation fields {fields} do not add up to {env.observation_dim}"
        )
    actuators = [str(a) for a in env.actuator_names]
    if len(actuators) != env.action_dim:
        raise SpecMismatchError(
            f"{env.task}: {len(actuators)} actuator names {actuators} for {env.action_dim} actions"
        )
    return fields, actuators


def mapped_env(env: Robot, io_map: IOMap | None = None) -> MappedEnv:
    """``env`` through ``io_map`` (default: the identity map of ``env``)."""
    fields, actuators = describe_env(env)
    return MappedEnv(env, io_map or IOMap.identity(env.task, fields, actuators), fields, actuators)
