"""Safety limits: the one place where actions are clipped to bounds and rate-limited."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SafetyLimits:
    """Clip to ``[low, high]`` and change each dimension by at most ``max_delta`` per tick."""

    low: np.ndarray
    high: np.ndarray
    max_delta: float | None = None  # per tick, in action units; None = no rate limit
    clipped_ticks: int = field(default=0, init=False)
    rate_limited_ticks: int = field(default=0, init=False)
    rejected_ticks: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.low = np.asarray(self.low, dtype=np.float64)
        self.high = np.asarray(self.high, dtype=np.float64)
        if self.low.shape != self.high.shape or np.any(self.low > self.high):
            raise ValueError(f"bad action bounds: low {self.low}, high {self.high}")

    def apply(
        self, action: np.ndarray, previous: np.ndarray | None, fallback: np.ndarray
    ) -> np.ndarray:
        """The action to send to the actuators. A non-finite or misshapen action is replaced
        by ``fallback`` (and counted) rather than raising inside the loop."""
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.low.shape or not np.all(np.isfinite(a)):
            self.rejected_ticks += 1
            a = np.asarray(fallback, dtype=np.float64)
        clipped = np.clip(a, self.low, self.high)
        if np.any(clipped != a):
            self.clipped_ticks += 1
        if self.max_delta is not None and previous is not None:
            limited = np.clip(clipped, previous - self.max_delta, previous + self.max_delta)
            if np.any(limited != clipped):
                self.rate_limited_ticks += 1
            clipped = np.clip(limited, self.low, self.high)
        return clipped
