"""Reference tracking: the desired next states of a recorded state trajectory.

``time`` indexing takes the reference state at the same step index; ``nearest`` finds the
reference state nearest to the current one (in a window around the last match, in units of
the reference's per-dimension std) and takes its successor, so a different start state does
not derail tracking.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np


class ReferenceTrajectory:
    def __init__(self, states: np.ndarray, indexing: str = "nearest", window: int = 50) -> None:
        states = np.asarray(states, dtype=np.float64)
        if states.ndim != 2 or len(states) < 2:
            raise ValueError(f"a reference needs a (T >= 2, ds) state array, got {states.shape}")
        if not np.all(np.isfinite(states)):
            raise ValueError("the reference states contain NaN or inf")
        if indexing not in ("time", "nearest"):
            raise ValueError(f"indexing must be 'time' or 'nearest', got '{indexing}'")
        self.states = states
        self.indexing = indexing
        self.window = window
        self.scale = np.where(states.std(axis=0) > 1e-6, states.std(axis=0), 1.0)
        self._last = 0

    @classmethod
    def from_file(cls, path: str | Path, indexing: str = "nearest") -> ReferenceTrajectory:
        """Load the ``states`` array of an episode ``.npz`` (numpy only, no pickle)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                if "states" not in data:
                    raise ValueError(f"{path}: no 'states' array (has {sorted(data.files)})")
                states = data["states"]
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a readable episode file ({exc})") from exc
        return cls(states, indexing)

    @property
    def dim(self) -> int:
        return int(self.states.shape[1])

    def reset(self) -> None:
        self._last = 0

    def desired(self, step: int, state: np.ndarray, count: int = 1) -> np.ndarray:
        """The next ``count`` desired states (count, ds) after the current step/state."""
        if self.indexing == "time":
            index = min(step, len(self.states) - 1)
        else:
            lo = max(0, self._last - self.window)
            hi = min(len(self.states), self._last + self.window + 1)
            distance = np.sum(((self.states[lo:hi] - state) / self.scale) ** 2, axis=1)
            index = lo + int(np.argmin(distance))
            self._last = index + 1
        rows = [min(index + 1 + j, len(self.states) - 1) for j in range(count)]
        return self.states[rows]
