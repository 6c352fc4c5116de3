"""Choosing the return target: a sweep of lockstep episodes over target fractions.

The target of return-conditioned control is ``R* = min_R + p * (max_R - min_R)`` with the
training set's return range from the model's metadata (reference section 4.6); ``p`` is a
test-time hyperparameter, picked per task and checkpoint. This sweeps ``p`` over
``fractions`` (the reference's 0.6 ... 1.1 by default), running the same ``episodes`` reset
seeds at each (paired comparison) in lockstep (deterministic, no deadline misses), and
picks the fraction with the best mean return.

The seeds are the calibration range (``seed`` + i), never the evaluation seeds of
``sim_control.py``, so the evaluation does not see the episodes the target was chosen on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controllers.loop import Controller, ControllerConfig
from mtm_robot.errors import ConfigError, MTMRobotError
from mtm_robot_client.modes import get_mode

REFERENCE_FRACTIONS = [0.6, 0.7, 0.8, 0.9, 1.0, 1.1]


@dataclass
class ReturnTargetConfig:
    fractions: list[float] = field(default_factory=lambda: list(REFERENCE_FRACTIONS))
    episodes: int = 5  # per fraction, the same seeds for every fraction
    max_steps: int = 0  # 0: whole episodes
    seed: int = 50_000_200  # reset seeds (calibration range)

    def __post_init__(self) -> None:
        if not self.fractions or any(not math.isfinite(p) for p in self.fractions):
            raise ConfigError(
                f"fractions must be a non-empty list of numbers, got {self.fractions}"
            )
        if self.episodes < 1:
            raise ConfigError(f"episodes must be >= 1, got {self.episodes}")
        if self.max_steps < 0:
            raise ConfigError(f"max_steps must be >= 0, got {self.max_steps}")


@dataclass
class ReturnTargetResult:
    return_min: float
    return_max: float
    fractions: list[float]
    targets: list[float]
    returns: np.ndarray  # (fractions, episodes)
    scores: np.ndarray | None  # normalised scores, where the task has reference returns
    seeds: list[int]
    steps: int  # control steps per episode

    @property
    def best_index(self) -> int:
        return int(np.argmax(self.returns.mean(axis=1)))

    @property
    def best_fraction(self) -> float:
        return self.fractions[self.best_index]

    @property
    def best_target(self) -> float:
        return self.targets[self.best_index]

    @property
    def notes(self) -> list[str]:
        fractions = sorted(self.fractions)
        if len(fractions) > 1 and self.best_fraction in (fractions[0], fractions[-1]):
            return [
                f"the best fraction {self.best_fraction:g} is at the edge of the sweep: "
                "a fraction beyond it may be better (extend --fractions)"
            ]
        return []

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for i, (p, target) in enumerate(zip(self.fractions, self.targets)):
            row: dict[str, Any] = {
                "fraction": p,
                "target_return": round(target, 6),
                "return_mean": round(float(self.returns[i].mean()), 3),
                "return_std": round(float(self.returns[i].std()), 3),
                "returns": [round(float(r), 3) for r in self.returns[i]],
            }
            if self.scores is not None:
                row["score_mean"] = round(float(self.scores[i].mean()), 2)
            rows.append(row)
        return {
            "best": {
                "fraction": self.best_fraction,
                "target_return": round(self.best_target, 6),
                "return_mean": round(float(self.returns[self.best_index].mean()), 3),
            },
            "return_range": [self.return_min, self.return_max],
            "seeds": self.seeds,
            "steps_per_episode": self.steps,
            "sweep": rows,
            "notes": self.notes,
        }


def return_range(metadata: dict[str, Any]) -> tuple[float, float]:
    """The training return range (min_R, max_R) a model's metadata carries."""
    stats = metadata.get("return_stats") or {}
    if "return_min" not in stats or "return_max" not in stats:
        raise MTMRobotError(
            f"model '{metadata.get('model_id')}' has no return_stats (return_min/return_max) "
            "in its metadata: there is no return range to sweep targets over"
        )
    return float(stats["return_min"]), float(stats["return_max"])


def sweep_return_target(
    env: Any,
    client: Any,
    metadata: dict[str, Any],
    mode: str = "return_conditioned",
    config: ReturnTargetConfig | None = None,
    score: Any = None,
    progress: bool = False,
) -> ReturnTargetResult:
    """Run the sweep; ``score(return) -> normalised score`` is optional."""
    from tqdm import tqdm

    c = config or ReturnTargetConfig()
    if not get_mode(mode).needs_return_target:
        raise MTMRobotError(
            f"the return target only matters in return-conditioned modes, not {mode}"
        )
    lo, hi = return_range(metadata)
    targets = [lo + p * (hi - lo) for p in c.fractions]
    seeds = [c.seed + e for e in range(c.episodes)]
    returns = np.zeros((len(c.fractions), c.episodes))
    steps = 0
    bar = tqdm(total=returns.size, desc="return target", unit="episode", disable=not progress)
    for i, target in enumerate(targets):
        config_i = ControllerConfig(
            mode=mode, realtime=False, target_return=target, max_steps=c.max_steps
        )
        controller = Controller(env, client, config_i)
        for e, seed in enumerate(seeds):
            result = controller.run_episode(seed)
            returns[i, e] = result.episode_return
            steps = result.ticks
            bar.set_postfix(fraction=c.fractions[i], ret=f"{result.episode_return:.1f}")
            bar.update()
    bar.close()
    scores = np.vectorize(score)(returns) if score is not None else None
    return ReturnTargetResult(lo, hi, list(c.fractions), targets, returns, scores, seeds, steps)
