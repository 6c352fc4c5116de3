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

Each tick's :class:`TickRecord` (state, target, prediction, latency, level, ...) goes into the
episode's :class:`TickLog` and to any :class:`TickObserver` (a live view: ``controllers.viz``).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import numpy as np

from controllers.fallback import FALLBACK_LEVELS, MODEL_LEVEL, FallbackConfig, FallbackLadder
from controllers.recorder import EpisodeRecorder
from controllers.reference import ReferenceTrajectory
from controllers.robot import Robot
from controllers.safety import SafetyLimits
from controllers.timing import Clock, LoopTimer, MonotonicClock, SimulatedClock
from mtm_robot.config import at_least, one_of, positive
from mtm_robot_client.modes import MODES, action_modes

log = logging.getLogger(__name__)

#: The modes the loop can run: an action answer from its own inputs (desired states come from
#: a reference trajectory); the modes are described in :mod:`mtm_robot_client.modes`.
CONTROL_MODES = action_modes(supplied=("future_states",))


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
    """The fixed-rate loop: mode, rate, pacing, request shape, deadlines and fallbacks."""

    mode: str = "return_conditioned"
    """inference mode: return_conditioned, inverse_dynamics, behavior_cloning, two_stage"""
    control_hz: float = 0.0
    """loop rate in Hz (0: the task's own control rate)"""
    realtime: bool = True
    """paced on the wall clock (False: lockstep, wait for every reply, deterministic)"""
    history: int = 2
    """past (state, action) pairs per request (L-2 keeps a next-state slot)"""
    target_return: float | None = None
    """return target of return_conditioned / two_stage (the session resolves it)"""
    deadline_margin_ms: float = 1.0
    """the request budget ends this long before the next tick"""
    lockstep_timeout_ms: float = 10_000.0
    """lockstep: how long each request waits for its reply"""
    max_action_delta: float | None = None
    """per-tick rate limit of the actions (action units; None: none)"""
    future_states: int = 2
    """inverse_dynamics: desired states per request (2: chosen on validation seeds)"""
    fallback: FallbackConfig = field(default_factory=FallbackConfig)
    max_steps: int = 0
    """steps per episode at most (0: until the environment ends the episode)"""

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


@dataclass(frozen=True)
class TickRecord:
    """What one tick did: one row of :class:`TickLog`."""

    t_s: float  # when the tick started
    period_s: float  # since the previous tick started (the nominal period on the first)
    lateness_s: float
    latency_s: float  # nan when no reply in time
    level: str  # one of controllers.fallback.LEVELS
    model_id: str  # "" when a fallback level answered
    requested: np.ndarray
    applied: np.ndarray
    surprise: float  # nan when there was no prediction
    reward: float  # nan when the robot gives no reward
    skipped: int
    node_down: bool  # the watched node was dead this tick
    state: np.ndarray  # the observation this tick's request carried
    target: np.ndarray  # the reference's desired next state (inverse_dynamics); nan otherwise
    predicted: np.ndarray  # the reply's predicted next state; nan when there was none


@dataclass
class TickLog:
    """An episode's per-tick telemetry: one list per :class:`TickRecord` field."""

    t_s: list[float] = field(default_factory=list)
    period_s: list[float] = field(default_factory=list)
    lateness_s: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    level: list[str] = field(default_factory=list)
    model_id: list[str] = field(default_factory=list)
    requested: list[np.ndarray] = field(default_factory=list)
    applied: list[np.ndarray] = field(default_factory=list)
    surprise: list[float] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    node_down: list[bool] = field(default_factory=list)
    state: list[np.ndarray] = field(default_factory=list)
    target: list[np.ndarray] = field(default_factory=list)
    predicted: list[np.ndarray] = field(default_factory=list)

    def append(self, tick: TickRecord) -> None:
        for name in _TICK_FIELDS:
            getattr(self, name).append(getattr(tick, name))

    def arrays(self) -> dict[str, np.ndarray]:
        """The columns as arrays (what ``telemetry_NNN.npz`` holds)."""
        return {
            name: np.asarray(getattr(self, name), dtype=_TICK_DTYPES.get(name))
            for name in _TICK_FIELDS
        }


_TICK_FIELDS = tuple(f.name for f in fields(TickRecord))
_TICK_DTYPES: dict[str, Any] = {"level": "U8", "model_id": "U64", "node_down": bool}


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
    budget_s: float = float("nan")  # a realtime request's budget: the period less the margin
    realtime: bool = True  # paced on the wall clock (False: lockstep)

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
            "deadline_misses": int(np.sum(levels != MODEL_LEVEL)),
            "fallback_ticks": {lv: int(np.sum(levels == lv)) for lv in FALLBACK_LEVELS},
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


class TickObserver(Protocol):
    """Sees the loop's telemetry as it is made (a live view, a logger): optional.

    ``on_tick`` runs on the control thread inside the tick, so it must return at once (hand the
    record to a thread of its own, never block); ``on_episode_end`` runs between episodes. An
    observer that raises is logged and dropped: the loop goes on without it.
    """

    def on_episode_start(self, seed: int) -> None: ...
    def on_tick(self, step: int, tick: TickRecord) -> None: ...
    def on_episode_end(self, result: EpisodeResult) -> None: ...


@dataclass
class _Episode:
    """A running episode: the loop's state between ticks, and what the result keeps."""

    timer: LoopTimer
    safety: SafetyLimits
    ladder: FallbackLadder
    state: np.ndarray  # the current observation
    last_applied: np.ndarray
    history_states: deque[np.ndarray]  # the last ``history`` executed (state, action) pairs
    history_actions: deque[np.ndarray]
    predicted_next: np.ndarray | None = None  # the last reply's prediction of this state
    previous_start_s: float | None = None
    step: int = 0
    terminated: bool = False
    truncated: bool = False
    ended_by: str = ""
    states: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    physics: list[np.ndarray] = field(default_factory=list)
    telemetry: TickLog = field(default_factory=TickLog)

    def advance(
        self,
        applied: np.ndarray,
        reward: float,
        snapshot: np.ndarray | None,
        step: tuple[np.ndarray, bool, bool],
    ) -> None:
        """Keep the executed (state, action, reward) and move on to the next state."""
        next_state, self.terminated, self.truncated = step
        self.states.append(self.state)
        self.actions.append(applied)
        self.rewards.append(reward)
        if snapshot is not None:
            self.physics.append(snapshot)
        self.history_states.append(self.state)
        self.history_actions.append(applied)
        self.last_applied = applied
        self.state = next_state
        self.step += 1


class Controller:
    """Runs episodes of the robot ``env`` under ``policy`` at a fixed rate.

    ``keep_physics``: read the robot's physics state every tick into the result (for rendering
    a video afterwards); with a ``recorder`` it is read for the recording anyway.
    ``observers``: see every tick's record as it is made (:class:`TickObserver`).
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
        observers: Sequence[TickObserver] = (),
    ) -> None:
        self.env = env
        self.observers = list(observers)
        self.node = node
        self.policy = policy
        self.config = config
        if "future_states" in MODES[config.mode].arrays:
            if reference is None:
                raise ValueError(f"{config.mode} needs a reference trajectory (--reference)")
            if reference.dim != env.observation_dim:
                raise ValueError(
                    f"reference states have dim {reference.dim}, the task's "
                    f"observations {env.observation_dim}"
                )
        if MODES[config.mode].needs_return_target and config.target_return is None:
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

    def run_episode(self, seed: int) -> EpisodeResult:
        """One episode from ``env.reset(seed=seed)`` until the robot ends it, ``max_steps``
        ticks have run, or the watched node is lost (``ended_by`` says so)."""
        episode = self._begin(seed)
        self._notify("on_episode_start", seed)
        while not self._finished(episode):
            episode.ended_by = self._node_lost()
            if episode.ended_by:
                break  # realtime: the fallback cannot stand in for a node that will not return
            try:
                self._tick(episode)
            except NodeLostError as exc:
                episode.ended_by = str(exc)
                break
        self._end_recording(episode)
        result = self._result(seed, episode)
        self._notify("on_episode_end", result)
        return result

    def _notify(self, event: str, *args: Any) -> None:
        """Call ``event`` on every observer; one that raises is logged and dropped."""
        for observer in list(self.observers):
            try:
                getattr(observer, event)(*args)
            except Exception:  # a broken view must not stop the robot
                log.exception("tick observer %r failed in %s: dropped", observer, event)
                self.observers.remove(observer)

    def _begin(self, seed: int) -> _Episode:
        """Reset the robot (and the reference, the recording) and start a fresh schedule."""
        c = self.config
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
        return _Episode(
            timer=LoopTimer(self.rate_hz, self.clock),
            safety=SafetyLimits(self.env.action_low, self.env.action_high, c.max_action_delta),
            ladder=FallbackLadder(c.fallback, self.neutral, self.safe),
            state=state,
            last_applied=self.neutral.copy(),
            history_states=deque(maxlen=c.history),
            history_actions=deque(maxlen=c.history),
        )

    def _finished(self, episode: _Episode) -> bool:
        max_steps = self.config.max_steps
        return (
            episode.terminated or episode.truncated or bool(max_steps and episode.step >= max_steps)
        )

    def _tick(self, episode: _Episode) -> None:
        """Wait for the tick, ask the policy, apply its action or fall back, step, record."""
        tick = episode.timer.wait()
        surprise = self._surprise(episode.state, episode.predicted_next)
        request_fields = self._fields(
            episode.step, episode.state, episode.history_states, episode.history_actions
        )
        reply, latency, node_down = self._ask(episode, request_fields)  # raises NodeLostError
        requested, level, model_id = self._answer(episode, reply)
        applied = episode.safety.apply(requested, episode.last_applied, self.neutral)
        snapshot = self.env.get_physics_state() if self.keep_physics else None
        next_state, reward, terminated, truncated, _ = self.env.step(applied)
        if self.recorder is not None:
            self.recorder.record(
                episode.state,
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
        reward_value = float("nan") if reward is None else float(reward)
        previous = episode.previous_start_s
        unknown = np.full(len(episode.state), np.nan)
        future = request_fields.get("future_states")
        record = TickRecord(
            t_s=tick.started_s,
            period_s=episode.timer.period_s if previous is None else tick.started_s - previous,
            lateness_s=tick.lateness_s,
            latency_s=latency,
            level=level,
            model_id=model_id,
            requested=np.asarray(requested, np.float64),
            applied=applied,
            surprise=surprise,
            reward=reward_value,
            skipped=tick.skipped,
            node_down=node_down,
            state=np.asarray(episode.state, np.float64),
            target=unknown if future is None else np.asarray(future[0], np.float64),
            predicted=unknown if episode.predicted_next is None else episode.predicted_next,
        )
        episode.telemetry.append(record)
        if self.observers:
            self._notify("on_tick", episode.step, record)
        episode.previous_start_s = tick.started_s
        if not self.config.realtime:
            assert isinstance(self.clock, SimulatedClock)
            self.clock.advance(episode.timer.period_s)
        episode.advance(applied, reward_value, snapshot, (next_state, terminated, truncated))

    def _surprise(self, state: np.ndarray, predicted: np.ndarray | None) -> float:
        """RMS of (observed - predicted) state, in normaliser units; nan without a prediction."""
        if predicted is None:
            return float("nan")
        diff = state - predicted
        if self.state_scale is not None:
            diff = diff / self.state_scale
        return float(np.sqrt(np.mean(diff**2)))

    def _ask(
        self, episode: _Episode, request_fields: dict[str, Any]
    ) -> tuple[Reply | None, float, bool]:
        """Request this tick's action within its budget (lockstep: the generous timeout).

        Returns the reply (None: none in time), its latency in seconds (nan without a good
        reply) and whether the watched node was down at any point of the tick.
        """
        c = self.config
        budget_end = episode.timer.next_deadline() - c.deadline_margin_ms / 1e3
        sent = self.clock.now()
        sent_wall = time.perf_counter()
        timeout_ms = (
            c.lockstep_timeout_ms if not c.realtime else max(0.0, (budget_end - sent) * 1e3)
        )
        generation = self.node.generation if self.node is not None else 0
        node_down = self.node is not None and self.node.down
        reply = self._request(episode.state, timeout_ms, request_fields)
        if self.node is not None:  # down at any point of this tick
            node_down |= self.node.down or self.node.generation != generation
        ok = reply is not None and reply.ok
        latency = time.perf_counter() - sent_wall if ok else float("nan")
        return reply, latency, node_down

    def _answer(self, episode: _Episode, reply: Reply | None) -> tuple[np.ndarray, str, str]:
        """The requested action, its level and model id: the reply's, else the fallback's."""
        episode.predicted_next = None
        if reply is None or not reply.ok:
            requested, level = episode.ladder.on_miss(episode.last_applied)
            return requested, level, ""
        requested = np.asarray(reply.action, np.float64)
        episode.ladder.on_reply(reply.action_chunk)
        if len(reply.next_states):
            episode.predicted_next = np.asarray(reply.next_states[0], np.float64)
        return requested, MODEL_LEVEL, reply.model_id

    def _fields(self, step: int, state: np.ndarray, hs: deque, ha: deque) -> dict[str, Any]:
        c = self.config
        mode = MODES[c.mode]
        future = None
        if "future_states" in mode.arrays:
            assert self.reference is not None
            future = self.reference.desired(step, state, c.future_states)
        return mode.request_fields(
            history_states=np.asarray(hs) if hs else None,
            history_actions=np.asarray(ha) if ha else None,
            return_target=c.target_return if mode.needs_return_target else None,
            future_states=future,
        )

    def _end_recording(self, episode: _Episode) -> None:
        if self.recorder is None:
            return
        policy_ids = sorted(set(episode.telemetry.model_id) - {""})
        self.recorder.end(
            terminated=bool(episode.terminated),
            truncated=bool(episode.truncated),
            policy_id=",".join(policy_ids),
            **({"ended_by": episode.ended_by} if episode.ended_by else {}),
        )

    def _result(self, seed: int, episode: _Episode) -> EpisodeResult:
        physics = episode.physics
        return EpisodeResult(
            seed,
            float(np.sum(episode.rewards)),
            episode.step,
            bool(episode.terminated),
            bool(episode.truncated),
            np.asarray(episode.states),
            np.asarray(episode.actions),
            np.asarray(episode.rewards),
            np.asarray(physics) if physics and len(physics) == episode.step else None,
            episode.telemetry,
            episode.timer.period_s,
            episode.ended_by,
            episode.timer.period_s - self.config.deadline_margin_ms / 1e3,
            self.config.realtime,
        )

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
