"""The fixed-rate controller: observe, request, apply the reply or fall back, limit, step, record.

Each tick (realtime mode):

1. wait for the tick's absolute deadline (:class:`~controllers.timing.LoopTimer`);
2. send the request with the current state, the recent history and the mode's inputs
   (return target, desired next states from a reference), its deadline = the tick's budget;
3. apply the reply if it arrived within the budget, else the fallback ladder
   (:mod:`controllers.fallback`);
4. clip and rate-limit (:mod:`controllers.safety`), step the robot, record telemetry.

The robot is any :class:`~controllers.robot.Robot` (a simulator adapter, a real robot's driver,
a mapped robot): the loop uses only that interface. Its physics state is read only when
something keeps it (a recorder, or ``keep_physics`` for rendering afterwards).

The reply's predicted next state is compared with the state observed on the next tick: a
free surprise signal (no extra inference). Lockstep mode runs the same code but waits for every
reply (up to a generous timeout) and needs no wall clock: deterministic evaluation.

A node the session owns is watched (:class:`NodeWatch`): while it is down, realtime ticks fall
back as for any miss and lockstep waits for its restart, then resends (the request died with
the node); once it is lost for good the episode ends, with the reason in ``ended_by``.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from controllers.fallback import FallbackConfig, FallbackLadder
from controllers.recorder import EpisodeRecorder
from controllers.reference import ReferenceTrajectory
from controllers.robot import Robot
from controllers.safety import SafetyLimits
from controllers.timing import Clock, LoopTimer, MonotonicClock, SimulatedClock
from mtm_robot.config import at_least, one_of, positive

log = logging.getLogger(__name__)

CONTROL_MODES = ("return_conditioned", "inverse_dynamics", "behavior_cloning", "two_stage")


class Reply(Protocol):
    @property
    def ok(self) -> bool: ...
    @property
    def action(self) -> np.ndarray: ...
    @property
    def action_chunk(self) -> np.ndarray: ...
    @property
    def next_states(self) -> np.ndarray: ...
    @property
    def model_id(self) -> str: ...


class PolicyPort(Protocol):
    """What the controller needs of a policy: the ZeroMQ client provides exactly this."""

    def submit(self, mode: str, state: np.ndarray, **fields: Any) -> int: ...
    def poll(self, request_id: int, timeout_ms: float = 0.0) -> Reply | None: ...
    def abandon(self, request_id: int) -> None: ...


class NodeWatch(Protocol):
    """The node's lifecycle, as a session that owns the node process sees it (optional)."""

    @property
    def down(self) -> bool: ...  # dead, or restarting
    @property
    def generation(self) -> int: ...  # +1 per restart: requests sent before it are gone
    @property
    def lost_reason(self) -> str: ...  # non-empty: gone for good, the run must end


class NodeLostError(Exception):
    """The watched node is gone for good (its reason is the message)."""


@dataclass
class ControllerConfig:
    mode: str = "return_conditioned"
    control_hz: float = 0.0  # 0 = the task's own control rate
    realtime: bool = True  # False = lockstep: wait for every reply, deterministic
    history: int = 2  # past (state, action) pairs per request; L-2 keeps a next-state slot
    target_return: float | None = None  # return_conditioned / two_stage
    deadline_margin_ms: float = 1.0  # the request budget ends this long before the next tick
    lockstep_timeout_ms: float = 10_000.0
    max_action_delta: float | None = None  # per-tick rate limit (action units)
    future_states: int = 2  # inverse_dynamics: desired states per request (2: chosen on validation
    # seeds 41,000,000+, see docs/default-model.md)
    fallback: FallbackConfig = field(default_factory=FallbackConfig)
    max_steps: int = 0  # 0 = until the environment ends the episode

    def __post_init__(self) -> None:
        one_of("mode", self.mode, CONTROL_MODES)
        if not (math.isfinite(self.control_hz) and self.control_hz >= 0):
            raise ValueError(
                f"control_hz must be a positive rate in Hz (or 0: the task's own rate), "
                f"got {self.control_hz}"
            )
        at_least(0, history=self.history, max_steps=self.max_steps)
        at_least(0, deadline_margin_ms=self.deadline_margin_ms)
        at_least(1, future_states=self.future_states)
        positive(
            lockstep_timeout_ms=self.lockstep_timeout_ms, max_action_delta=self.max_action_delta
        )


@dataclass
class TickLog:
    """Per-tick telemetry, as parallel lists (turned into arrays by :meth:`arrays`)."""

    t_s: list[float] = field(default_factory=list)
    period_s: list[float] = field(default_factory=list)
    lateness_s: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)  # nan when no reply in time
    level: list[str] = field(default_factory=list)  # model | chunk | hold | decay | safe
    model_id: list[str] = field(default_factory=list)
    requested: list[np.ndarray] = field(default_factory=list)
    applied: list[np.ndarray] = field(default_factory=list)
    surprise: list[float] = field(default_factory=list)  # nan when there was no prediction
    reward: list[float] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    node_down: list[bool] = field(default_factory=list)  # the watched node was dead this tick

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "t_s": np.asarray(self.t_s),
            "period_s": np.asarray(self.period_s),
            "lateness_s": np.asarray(self.lateness_s),
            "latency_s": np.asarray(self.latency_s),
            "level": np.asarray(self.level, dtype="U8"),
            "model_id": np.asarray(self.model_id, dtype="U64"),
            "requested": np.asarray(self.requested),
            "applied": np.asarray(self.applied),
            "surprise": np.asarray(self.surprise),
            "reward": np.asarray(self.reward),
            "skipped": np.asarray(self.skipped),
            "node_down": np.asarray(self.node_down, dtype=bool),
        }


@dataclass
class EpisodeResult:
    seed: int
    episode_return: float
    ticks: int
    terminated: bool
    truncated: bool
    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray  # nan where the robot gave no reward (then episode_return is nan)
    physics: np.ndarray | None  # (ticks, physics_dim) when kept and the robot has one
    telemetry: TickLog
    nominal_period_s: float
    ended_by: str = ""  # why the episode stopped before its end ("": it ran to the end)

    def summary(self) -> dict[str, Any]:
        tel = self.telemetry.arrays()
        latency = tel["latency_s"][np.isfinite(tel["latency_s"])]
        period = tel["period_s"][1:]
        jitter = np.abs(period - self.nominal_period_s)  # deviation from the nominal period
        surprise = tel["surprise"][np.isfinite(tel["surprise"])]
        levels = tel["level"]
        return {
            "seed": self.seed,
            "return": self.episode_return,
            "ticks": self.ticks,
            "deadline_misses": int(np.sum(levels != "model")),
            "fallback_ticks": {
                lv: int(np.sum(levels == lv)) for lv in ("chunk", "hold", "decay", "safe")
            },
            "skipped_ticks": int(tel["skipped"].sum()) if len(tel["skipped"]) else 0,
            "latency_ms_p50": _pct(latency, 50) * 1e3,
            "latency_ms_p99": _pct(latency, 99) * 1e3,
            "jitter_ms_p99": _pct(jitter, 99) * 1e3,
            "surprise_mean": float(surprise.mean()) if len(surprise) else float("nan"),
            "models": sorted(set(tel["model_id"].tolist()) - {""}),
            "node_down_ticks": int(tel["node_down"].sum()),
            "ended_by": self.ended_by,
        }


def _pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else float("nan")


class Controller:
    """Runs episodes of the robot ``env`` under ``policy`` at a fixed rate.

    ``keep_physics``: read the robot's physics state every tick into the result (for rendering
    a video afterwards); with a ``recorder`` it is read for the recording anyway.
    """

    def __init__(
        self,
        env: Robot,
        policy: PolicyPort,
        config: ControllerConfig,
        reference: ReferenceTrajectory | None = None,
        clock: Clock | None = None,
        neutral_action: np.ndarray | None = None,
        safe_action: np.ndarray | None = None,
        state_scale: np.ndarray | None = None,
        recorder: EpisodeRecorder | None = None,
        node: NodeWatch | None = None,
        keep_physics: bool = False,
    ) -> None:
        self.env = env
        self.node = node
        self.policy = policy
        self.config = config
        if config.mode == "inverse_dynamics":
            if reference is None:
                raise ValueError("inverse_dynamics needs a reference trajectory (--reference)")
            if reference.dim != env.observation_dim:
                raise ValueError(
                    f"reference states have dim {reference.dim}, the task's "
                    f"observations {env.observation_dim}"
                )
        if config.mode in ("return_conditioned", "two_stage") and config.target_return is None:
            raise ValueError(f"{config.mode} needs a target return")
        self.reference = reference
        self.rate_hz = config.control_hz or env.control_hz
        self.clock: Clock = clock or (MonotonicClock() if config.realtime else SimulatedClock())
        mid = (np.asarray(env.action_low) + np.asarray(env.action_high)) / 2
        self.neutral = mid if neutral_action is None else np.asarray(neutral_action, np.float64)
        self.safe = self.neutral if safe_action is None else np.asarray(safe_action, np.float64)
        self.state_scale = state_scale
        self.recorder = recorder
        self.keep_physics = keep_physics or recorder is not None
        self.link_errors = 0  # requests that could not be sent (node unreachable)
        self.error_replies = 0  # replies with an error status (expired, bad request, ...)

    def _fields(self, step: int, state: np.ndarray, hs: deque, ha: deque) -> dict[str, Any]:
        c = self.config
        fields: dict[str, Any] = {}
        if hs:
            fields["history_states"] = np.asarray(hs)
            fields["history_actions"] = np.asarray(ha)
        if c.mode in ("return_conditioned", "two_stage"):
            fields["return_target"] = c.target_return
        if c.mode == "inverse_dynamics":
            assert self.reference is not None
            fields["future_states"] = self.reference.desired(step, state, c.future_states)
        return fields

    def _node_lost(self) -> str:
        return self.node.lost_reason if self.node is not None else ""

    def _await_node(self) -> None:
        """Lockstep: wait while the watched node restarts (its ready timeout bounds this)."""
        assert self.node is not None
        while self.node.down and not self.node.lost_reason:
            time.sleep(0.01)
        if self.node.lost_reason:
            raise NodeLostError(self.node.lost_reason)

    def _request(
        self, state: np.ndarray, timeout_ms: float, fields: dict[str, Any]
    ) -> Reply | None:
        """Send and wait up to ``timeout_ms``; a failure of the link is a miss, never a crash.

        Lockstep with a watched node waits in slices and checks the node between them: a death
        is seen at once (the request is resent after the restart) and :class:`NodeLostError` is
        raised when the node is gone for good, so lockstep never waits on a dead node.
        """
        watched = self.node is not None and not self.config.realtime
        slice_ms = 50.0 if watched else timeout_ms
        give_up = time.perf_counter() + timeout_ms / 1e3
        generation = self.node.generation if self.node is not None else 0
        rid: int | None = None
        while True:
            if watched:
                assert self.node is not None
                if self.node.down or self.node.lost_reason or self.node.generation != generation:
                    if rid is not None:  # it died with the node
                        self.policy.abandon(rid)
                        rid = None
                    self._await_node()
                    generation = self.node.generation
                    give_up = time.perf_counter() + timeout_ms / 1e3
            if rid is None:
                try:
                    rid = self.policy.submit(
                        self.config.mode, state, deadline_ms=timeout_ms, **fields
                    )
                except (OSError, TimeoutError) as exc:  # node away: the send cannot be queued
                    if self.config.realtime or time.perf_counter() > give_up:
                        self.link_errors += 1
                        log.debug("request not sent: %s", exc)
                        return None
                    time.sleep(0.005)  # lockstep waits for the link (connecting, restarting)
                    continue
            remaining_ms = max(0.0, (give_up - time.perf_counter()) * 1e3)
            reply = self.policy.poll(rid, timeout_ms=min(slice_ms, remaining_ms))
            if reply is not None:
                if not reply.ok:
                    self.error_replies += 1
                return reply
            if not watched or time.perf_counter() > give_up:
                self.policy.abandon(rid)
                return None

    def run_episode(self, seed: int) -> EpisodeResult:
        c = self.config
        timer = LoopTimer(self.rate_hz, self.clock)
        period = 1.0 / self.rate_hz
        safety = SafetyLimits(self.env.action_low, self.env.action_high, c.max_action_delta)
        ladder = FallbackLadder(c.fallback, self.neutral, self.safe)
        if self.reference is not None:
            self.reference.reset()
        state, _ = self.env.reset(seed=seed)
        if self.recorder is not None:
            self.recorder.begin(
                {
                    "task": self.env.task,
                    "source": "controller",
                    "seed": seed,
                    "control_hz": self.rate_hz,
                    "mode": c.mode,
                    "target_return": c.target_return,
                }
            )
        hs: deque[np.ndarray] = deque(maxlen=c.history)
        ha: deque[np.ndarray] = deque(maxlen=c.history)
        log_ = TickLog()
        states, actions, rewards = [], [], []
        physics: list[np.ndarray] = []
        last_applied = self.neutral.copy()
        predicted_next: np.ndarray | None = None
        previous_start: float | None = None
        terminated = truncated = False
        step = 0
        ended_by = ""
        while not (terminated or truncated) and not (c.max_steps and step >= c.max_steps):
            if ended_by := self._node_lost():
                break  # realtime: the fallback cannot stand in for a node that will not return
            tick = timer.wait()
            surprise = float("nan")
            if predicted_next is not None:
                diff = state - predicted_next
                if self.state_scale is not None:
                    diff = diff / self.state_scale
                surprise = float(np.sqrt(np.mean(diff**2)))
            budget_end = timer.next_deadline() - c.deadline_margin_ms / 1e3
            sent = self.clock.now()
            sent_wall = time.perf_counter()
            timeout_ms = (
                c.lockstep_timeout_ms if not c.realtime else max(0.0, (budget_end - sent) * 1e3)
            )
            fields = self._fields(step, state, hs, ha)
            generation = self.node.generation if self.node is not None else 0
            node_down = self.node is not None and self.node.down
            try:
                reply = self._request(state, timeout_ms, fields)
            except NodeLostError as exc:
                ended_by = str(exc)
                break
            if self.node is not None:  # down at any point of this tick
                node_down |= self.node.down or self.node.generation != generation
            latency = float("nan")
            model_id = ""
            predicted_next = None
            if reply is not None and reply.ok:
                latency = time.perf_counter() - sent_wall
                requested = np.asarray(reply.action, np.float64)
                ladder.on_reply(reply.action_chunk)
                level, model_id = "model", reply.model_id
                if len(reply.next_states):
                    predicted_next = np.asarray(reply.next_states[0], np.float64)
            else:
                requested, level = ladder.on_miss(last_applied)
            applied = safety.apply(requested, last_applied, self.neutral)
            states.append(state)
            snapshot = self.env.get_physics_state() if self.keep_physics else None
            if snapshot is not None:
                physics.append(snapshot)
            next_state, reward, terminated, truncated, _ = self.env.step(applied)
            if self.recorder is not None:
                self.recorder.record(
                    state,
                    applied,
                    reward,  # None (a robot without a reward): the episode stores no rewards
                    snapshot,
                    tick.started_s,
                    latency_s=latency,
                    level=level,
                    model_id=model_id,
                    requested=requested,
                    surprise=surprise,
                )
            actions.append(applied)
            rewards.append(float("nan") if reward is None else float(reward))
            hs.append(state)
            ha.append(applied)
            log_.t_s.append(tick.started_s)
            log_.period_s.append(
                period if previous_start is None else tick.started_s - previous_start
            )
            previous_start = tick.started_s
            log_.lateness_s.append(tick.lateness_s)
            log_.latency_s.append(latency)
            log_.level.append(level)
            log_.model_id.append(model_id)
            log_.requested.append(np.asarray(requested, np.float64))
            log_.applied.append(applied)
            log_.surprise.append(surprise)
            log_.reward.append(rewards[-1])
            log_.skipped.append(tick.skipped)
            log_.node_down.append(node_down)
            if not c.realtime:
                assert isinstance(self.clock, SimulatedClock)
                self.clock.advance(period)
            last_applied = applied
            state = next_state
            step += 1
        if self.recorder is not None:
            policy_ids = sorted(set(log_.model_id) - {""})
            self.recorder.end(
                terminated=bool(terminated),
                truncated=bool(truncated),
                policy_id=",".join(policy_ids),
                **({"ended_by": ended_by} if ended_by else {}),
            )
        return EpisodeResult(
            seed,
            float(np.sum(rewards)),
            step,
            bool(terminated),
            bool(truncated),
            np.asarray(states),
            np.asarray(actions),
            np.asarray(rewards),
            np.asarray(physics) if physics and len(physics) == step else None,
            log_,
            period,
            ended_by,
        )
