"""The episode store: one ``.npz`` file per episode, readable with numpy alone.

Layout (see ``docs/data-format.md``):

* ``states``   (T, ds) float32, required.
* ``actions``  (T, da) float32, only when actions are known; ``actions[t]`` is taken in
  ``states[t]``. An action-free episode has no ``actions`` array at all.
* ``rewards``  (T,) float32, only when known; ``rewards[t]`` is received for ``actions[t]``.
* ``physics``  (T, dp) float64, optional simulator state per step, for replay and rendering.
* ``time_s``   (T,) float64, optional timestamps.
* ``telemetry_<name>`` (T, ...) optional per-step controller telemetry (request latency,
  fallback level, model id, requested action, surprise), numeric or unicode arrays.
* ``meta``     a 1-element unicode array holding one JSON object (task, source, control_hz,
  policy_id, seed, terminated, truncated, ...).

Files are written crash-safely (:mod:`mtm_robot.atomic`): temporary file in the same folder,
fsync, atomic rename; a failed write (a full disk) leaves no temporary file.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mtm_robot import atomic
from mtm_robot.errors import DataError

FORMAT_VERSION = 1
_ARRAY_KEYS = ("states", "actions", "rewards", "physics", "time_s")
TELEMETRY_PREFIX = "telemetry_"
_EPISODE_NAME = re.compile(r"^episode_(\d+)\.npz$")


@dataclass
class Episode:
    """One trajectory; a missing modality is ``None``, never zero-filled."""

    states: np.ndarray
    actions: np.ndarray | None = None
    rewards: np.ndarray | None = None
    physics: np.ndarray | None = None
    time_s: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    telemetry: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.states = _numeric("states", self.states, np.float32)
        if self.states.ndim != 2:
            raise DataError(f"states: expected shape (T, ds), got {self.states.shape}")
        n = len(self.states)
        if self.actions is not None:
            self.actions = _numeric("actions", self.actions, np.float32)
            _check_len("actions", self.actions, n, ndim=2)
        if self.rewards is not None:
            self.rewards = _numeric("rewards", self.rewards, np.float32).reshape(-1)
            _check_len("rewards", self.rewards, n, ndim=1)
        if self.physics is not None:
            self.physics = _numeric("physics", self.physics, np.float64)
            _check_len("physics", self.physics, n, ndim=2)
        if self.time_s is not None:
            self.time_s = _numeric("time_s", self.time_s, np.float64).reshape(-1)
            _check_len("time_s", self.time_s, n, ndim=1)
        for name, value in self.telemetry.items():
            value = np.asarray(value)
            if value.dtype.kind not in "biufU" or len(value) != n:
                raise DataError(
                    f"telemetry '{name}': expected a numeric or text array with {n} "
                    f"steps, got {value.dtype} {value.shape}"
                )
            self.telemetry[name] = value

    def __len__(self) -> int:
        return len(self.states)

    @property
    def has_actions(self) -> bool:
        return self.actions is not None

    def without_actions(self) -> Episode:
        """The same episode as an action-free demonstration."""
        meta = dict(self.meta, actions_dropped=True)
        telemetry = {k: v for k, v in self.telemetry.items() if "action" not in k}
        return Episode(self.states, None, self.rewards, self.physics, self.time_s, meta, telemetry)

    def total_reward(self) -> float:
        if self.rewards is None:
            raise DataError("episode has no rewards")
        return float(self.rewards.sum())


def _numeric(name: str, value: Any, dtype: type[np.floating[Any]]) -> np.ndarray:
    """``value`` as a ``dtype`` array; text, objects or anything non-numeric is a DataError."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise DataError(f"{name}: expected numbers, got {array.dtype} values")
    return array.astype(dtype, copy=False)


def _check_len(name: str, array: np.ndarray, n: int, ndim: int) -> None:
    if array.ndim != ndim or len(array) != n:
        raise DataError(
            f"{name}: expected {ndim}-d array with {n} steps (as states), got shape {array.shape}"
        )


def save_episode(path: str | Path, episode: Episode) -> Path:
    """Write ``episode`` to ``path`` atomically (tmp file, fsync, rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for key in _ARRAY_KEYS:
        value = getattr(episode, key)
        if value is not None:
            arrays[key] = value
    for name, value in episode.telemetry.items():
        arrays[TELEMETRY_PREFIX + name] = value
    meta = dict(episode.meta, format_version=FORMAT_VERSION)
    arrays["meta"] = np.array([json.dumps(meta, sort_keys=True)])
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return atomic.write_bytes(path, buffer.getbuffer())


def load_episode(path: str | Path) -> Episode:
    """Read an episode; never unpickles (``allow_pickle=False``)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "states" not in data:
                raise DataError(f"{path}: no 'states' array (keys: {sorted(data.files)})")
            arrays = {key: data[key] for key in _ARRAY_KEYS if key in data}
            telemetry = {
                k[len(TELEMETRY_PREFIX) :]: data[k]
                for k in data.files
                if k.startswith(TELEMETRY_PREFIX)
            }
            meta = json.loads(str(data["meta"][0])) if "meta" in data else {}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable episode file ({exc})") from exc
    try:
        return Episode(meta=meta, telemetry=telemetry, **arrays)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc


def episode_paths(directory: str | Path) -> list[Path]:
    """Episode files of a store directory, in index order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"episode store {directory} does not exist or is not a directory")
    found = [
        (int(m.group(1)), p) for p in directory.iterdir() if (m := _EPISODE_NAME.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def episode_file(directory: str | Path, index: int) -> Path:
    """The canonical file name of episode ``index`` in a store directory."""
    return Path(directory) / f"episode_{index:06d}.npz"


def iter_episodes(directory: str | Path) -> Iterator[Episode]:
    for path in episode_paths(directory):
        yield load_episode(path)


def load_episodes(directory: str | Path) -> list[Episode]:
    return list(iter_episodes(directory))
