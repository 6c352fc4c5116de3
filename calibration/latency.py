"""The latency budget: how fast a loop can run against a given node, and how to set it up.

Measured, in this order, with the controller's own mechanisms:

1. the round-trip distribution of blocking ``act`` requests shaped like the loop's (current
   state, history, mode inputs) to the node;
2. the tick's own work after a reply arrives (safety limits, physics snapshot, one
   environment step), and how late the loop timer wakes up (an idle
   :class:`~controllers.timing.LoopTimer` at the fastest candidate rate);
3. at each candidate rate, a realtime :class:`~controllers.loop.Controller` episode of
   ``ticks_per_rate`` ticks: missed deadlines, skipped ticks, jitter, in-time latency.

Recommendations, each a rule on the measurements (see ``docs/calibration.md``):

* ``deadline_margin_ms``: the p99 tick work plus the p99 timer lateness, rounded up to
  0.1 ms: a reply that arrives just inside its budget still leaves time to apply it before
  the next tick;
* ``control_hz``: the task's rate when it meets the budget (at most ``max_miss_fraction`` of
  ticks missed, none skipped); otherwise the fastest candidate below it that does, else the
  candidate that missed least (marked infeasible);
* fallback: hold for as many ticks as the slowest measured round trip spans, decay over
  ``decay_s``, and the safe action after ``safe_after_s`` of consecutive misses.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controllers.fallback import FallbackConfig
from controllers.loop import Controller, ControllerConfig
from controllers.robot import Robot
from controllers.safety import SafetyLimits
from controllers.timing import LoopTimer
from mtm_robot.errors import ConfigError
from mtm_robot_client.modes import get_mode


@dataclass
class LatencyConfig:
    rates_hz: list[float] = field(default_factory=list)  # empty: task rate x 0.5, 1, 2, 4, 8
    round_trips: int = 300  # blocking requests for the round-trip distribution
    work_samples: int = 300  # tick-work samples
    timer_ticks: int = 200  # idle timer ticks for the wake-up lateness
    ticks_per_rate: int = 200  # realtime controller ticks at each candidate rate
    max_miss_fraction: float = 0.01  # of ticks, for a rate to count as feasible
    decay_s: float = 0.2  # fallback: decay to neutral over this long
    safe_after_s: float = 1.0  # fallback: the safe action after this long of misses
    seed: int = 50_000_100  # reset seeds (calibration range)

    def __post_init__(self) -> None:
        if any(not (r > 0 and math.isfinite(r)) for r in self.rates_hz):
            raise ConfigError(f"rates_hz must be positive numbers, got {self.rates_hz}")
        for name in ("round_trips", "work_samples", "timer_ticks", "ticks_per_rate"):
            if getattr(self, name) < 10:
                raise ConfigError(f"{name} must be >= 10, got {getattr(self, name)}")
        if not 0 <= self.max_miss_fraction < 1:
            raise ConfigError(f"max_miss_fraction must be in [0, 1), got {self.max_miss_fraction}")


@dataclass
class RateTrial:
    """A realtime controller run at one candidate rate."""

    rate_hz: float
    ticks: int
    miss_fraction: float
    skipped_ticks: int
    latency_ms_p50: float  # of the replies that arrived in time
    latency_ms_p99: float
    jitter_ms_p99: float
    feasible: bool


@dataclass
class LatencyResult:
    round_trip_ms: np.ndarray  # every blocking round trip
    work_ms: np.ndarray  # every tick-work sample
    timer_lateness_ms: np.ndarray  # every idle-timer wake-up
    trials: list[RateTrial]
    task_hz: float
    control_hz: float
    deadline_margin_ms: float
    fallback: FallbackConfig
    feasible: bool
    notes: list[str]

    @property
    def request_deadline_ms(self) -> float:
        """The request budget at the recommended rate: period minus margin."""
        return 1e3 / self.control_hz - self.deadline_margin_ms

    def to_dict(self) -> dict[str, Any]:
        def dist(x: np.ndarray) -> dict[str, float]:
            return {
                "p50": round(float(np.percentile(x, 50)), 4),
                "p90": round(float(np.percentile(x, 90)), 4),
                "p99": round(float(np.percentile(x, 99)), 4),
                "max": round(float(np.max(x)), 4),
                "samples": len(x),
            }

        return {
            "recommended": {
                "control_hz": self.control_hz,
                "deadline_margin_ms": self.deadline_margin_ms,
                "request_deadline_ms": round(self.request_deadline_ms, 3),
                "fallback": vars(self.fallback).copy(),
                "feasible": self.feasible,
            },
            "task_hz": self.task_hz,
            "round_trip_ms": dist(self.round_trip_ms),
            "tick_work_ms": dist(self.work_ms),
            "timer_lateness_ms": dist(self.timer_lateness_ms),
            "rates": [
                {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(t).items()}
                for t in self.trials
            ],
            "notes": list(self.notes),
        }


def _request_fields(
    env: Robot, mode: str, target_return: float | None, seed: int, history: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """A state and request fields like the loop's, from a short rollout at neutral."""
    neutral = (np.asarray(env.action_low) + np.asarray(env.action_high)) / 2
    states, actions = [], []
    state, _ = env.reset(seed=seed)
    for _ in range(history + 1):
        states.append(state)
        actions.append(neutral)
        state, *_ = env.step(neutral)
    description = get_mode(mode)
    # what a rollout at neutral can fill in: the state reached (one row) and the neutral action
    available = {"future_states": [state], "goal_state": state, "planned_actions": [neutral]}
    arrays = {name: np.asarray(available[name]) for name in description.arrays}
    fields = description.request_fields(
        history_states=np.asarray(states[-history:]) if history else None,
        history_actions=np.asarray(actions[-history:]) if history else None,
        return_target=target_return if description.needs_return_target else None,
        **arrays,
    )
    return state, fields


def _ceil_tenth(x: float) -> float:
    return math.ceil(x * 10 - 1e-9) / 10


def measure_latency(
    env: Robot,
    client: Any,
    mode: str,
    target_return: float | None,
    config: LatencyConfig | None = None,
    progress: bool = False,
) -> LatencyResult:
    """Measure and recommend; ``env`` is a :class:`~controllers.robot.Robot` (a
    :class:`~controllers.io_map.MappedEnv` for a robot's map), ``client`` a connected
    ``NodeClient`` of a warm node."""
    from tqdm import tqdm

    c = config or LatencyConfig()
    task_hz = float(env.control_hz)
    rates = sorted(c.rates_hz or [task_hz * f for f in (0.5, 1, 2, 4, 8)])
    history = ControllerConfig().history
    total = c.round_trips + c.work_samples + c.timer_ticks + c.ticks_per_rate * len(rates)
    bar = tqdm(total=total, desc="latency", unit="tick", disable=not progress)
    state, fields = _request_fields(env, mode, target_return, c.seed, history)
    for _ in range(5):  # warm the connection
        client.act(mode, state, timeout_ms=5000, **fields)
    rtt = np.empty(c.round_trips)
    for i in range(c.round_trips):
        t0 = time.perf_counter()
        client.act(mode, state, timeout_ms=5000, **fields)
        rtt[i] = (time.perf_counter() - t0) * 1e3
        bar.update()
    work = _tick_work_ms(env, c, bar)
    lateness = _timer_lateness_ms(max(rates), c.timer_ticks, bar)
    margin = _ceil_tenth(float(np.percentile(work, 99) + np.percentile(lateness, 99)))
    trials = []
    for k, rate in enumerate(rates):
        cfg = ControllerConfig(
            mode=mode,
            control_hz=rate,
            realtime=True,
            target_return=target_return,
            deadline_margin_ms=margin,
            max_steps=c.ticks_per_rate,
        )
        result = Controller(env, client, cfg).run_episode(c.seed + 1 + k)
        s = result.summary()
        misses = s["deadline_misses"] / max(1, s["ticks"])
        trials.append(
            RateTrial(
                rate,
                s["ticks"],
                misses,
                s["skipped_ticks"],
                s["latency_ms_p50"],
                s["latency_ms_p99"],
                s["jitter_ms_p99"],
                bool(misses <= c.max_miss_fraction and s["skipped_ticks"] == 0),
            )
        )
        bar.update(c.ticks_per_rate)
    bar.close()
    control_hz, feasible, notes = _choose_rate(trials, task_hz)
    return LatencyResult(
        rtt,
        work,
        lateness,
        trials,
        task_hz,
        control_hz,
        margin,
        _fallback(float(rtt.max()), control_hz, c),
        feasible,
        notes,
    )


def _tick_work_ms(env: Robot, c: LatencyConfig, bar: Any) -> np.ndarray:
    """What the loop does between a reply and the next tick, timed one tick at a time."""
    low, high = np.asarray(env.action_low), np.asarray(env.action_high)
    safety = SafetyLimits(low, high)
    rng = np.random.default_rng(c.seed)
    neutral = (low + high) / 2
    previous = neutral
    env.reset(seed=c.seed)
    work = np.empty(c.work_samples)
    for i in range(c.work_samples):
        requested = rng.uniform(low, high)
        t0 = time.perf_counter()
        applied = safety.apply(requested, previous, neutral)
        env.get_physics_state()  # read when a run records (None on a real robot)
        _, _, terminated, truncated, _ = env.step(applied)
        work[i] = (time.perf_counter() - t0) * 1e3
        previous = applied
        if terminated or truncated:
            env.reset(seed=c.seed)
        bar.update()
    return work


def _timer_lateness_ms(rate_hz: float, ticks: int, bar: Any) -> np.ndarray:
    timer = LoopTimer(rate_hz)
    late = np.empty(ticks)
    for i in range(ticks):
        late[i] = max(0.0, timer.wait().lateness_s) * 1e3
        bar.update()
    return late


def _choose_rate(trials: list[RateTrial], task_hz: float) -> tuple[float, bool, list[str]]:
    notes = []
    at_task = [t for t in trials if math.isclose(t.rate_hz, task_hz)]
    faster = [t.rate_hz for t in trials if t.feasible and t.rate_hz > task_hz]
    if faster:
        notes.append(f"headroom: the loop also meets its budget at {max(faster):g} Hz")
    if at_task and at_task[0].feasible:
        return task_hz, True, notes
    slower = [t for t in trials if t.feasible and t.rate_hz < task_hz]
    if slower:
        best = max(slower, key=lambda t: t.rate_hz)
        notes.append(
            f"the task's {task_hz:g} Hz misses its budget: {best.rate_hz:g} Hz is the fastest "
            "rate that meets it (a simulator then runs slower than real time; a robot needs "
            "a faster node or a model trained at this rate)"
        )
        return best.rate_hz, True, notes
    best = min(trials, key=lambda t: (t.miss_fraction, -t.rate_hz))
    notes.append(
        f"no candidate rate meets the budget; {best.rate_hz:g} Hz missed least "
        f"({best.miss_fraction:.1%}): serve the model on a faster node"
    )
    return best.rate_hz, False, notes


def _fallback(rtt_max_ms: float, rate_hz: float, c: LatencyConfig) -> FallbackConfig:
    period_ms = 1e3 / rate_hz
    hold = max(1, math.ceil(rtt_max_ms / period_ms))
    decay = max(1, round(c.decay_s * rate_hz))
    safe = max(hold + decay + 1, round(c.safe_after_s * rate_hz))
    return FallbackConfig(hold_ticks=hold, decay_ticks=decay, safe_after_misses=safe)
