"""The fallback ladder used when a reply misses its deadline.

1. the next action of the last reply's action chunk (the model planned it);
2. hold the last applied action;
3. decay linearly to the neutral action;
4. after ``safe_after_misses`` consecutive misses, the safe action.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtm_robot.config import at_least

#: What answered a tick: the model's reply, or a rung of the ladder (in order).
LEVELS = ("model", "chunk", "hold", "decay", "safe")
MODEL_LEVEL = LEVELS[0]
FALLBACK_LEVELS = LEVELS[1:]


@dataclass
class FallbackConfig:
    """What the loop does when a reply misses its deadline, in order."""

    use_chunk: bool = True
    """first play the rest of the last predicted action chunk"""
    hold_ticks: int = 2
    """misses answered by holding the last action, after the chunk runs out"""
    decay_ticks: int = 8
    """misses over which the action then decays to neutral"""
    safe_after_misses: int = 40
    """consecutive misses before the safe action"""

    def __post_init__(self) -> None:
        at_least(0, hold_ticks=self.hold_ticks, decay_ticks=self.decay_ticks)
        at_least(1, safe_after_misses=self.safe_after_misses)


class FallbackLadder:
    """Tracks consecutive misses and the last chunk; answers a miss with a labelled action."""

    def __init__(self, config: FallbackConfig, neutral: np.ndarray, safe: np.ndarray) -> None:
        self.config = config
        self.neutral = np.asarray(neutral, dtype=np.float64)
        self.safe = np.asarray(safe, dtype=np.float64)
        self.misses = 0  # consecutive
        self._chunk: list[np.ndarray] = []
        self._past_chunk = 0  # consecutive misses after the chunk ran out
        self._decay_from: np.ndarray | None = None

    def on_reply(self, chunk: np.ndarray | None) -> None:
        """A reply arrived in time: reset the ladder and keep its chunk for later misses."""
        self.misses = 0
        self._past_chunk = 0
        self._decay_from = None
        # chunk[0] is applied now; the rest answers the next misses in order
        use = self.config.use_chunk and chunk is not None
        self._chunk = [np.asarray(a, np.float64) for a in chunk[1:]] if use else []  # type: ignore[index]

    def on_miss(self, last_applied: np.ndarray) -> tuple[np.ndarray, str]:
        """The action for a tick whose reply did not arrive in time, and its level name."""
        c = self.config
        self.misses += 1
        if self.misses >= c.safe_after_misses:
            return self.safe.copy(), "safe"
        if self._chunk:
            return self._chunk.pop(0), "chunk"
        self._past_chunk += 1
        if self._past_chunk <= c.hold_ticks:
            return np.asarray(last_applied, np.float64).copy(), "hold"
        if self._decay_from is None:
            self._decay_from = np.asarray(last_applied, np.float64).copy()
        fraction = min(1.0, (self._past_chunk - c.hold_ticks) / max(1, c.decay_ticks))
        return (1 - fraction) * self._decay_from + fraction * self.neutral, "decay"
