"""The controller on a toy environment and a scripted policy, on simulated time."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from controllers.fallback import FallbackConfig, FallbackLadder
from controllers.loop import Controller, ControllerConfig
from controllers.reference import ReferenceTrajectory
from controllers.safety import SafetyLimits
from controllers.timing import SimulatedClock


class ToyEnv:
    """x' = x + 0.1 a, reward -|x|; 2-d state, 2-d action in [-1, 1]."""

    task = "toy"
    action_low = -np.ones(2)
    action_high = np.ones(2)
    action_dim = 2
    observation_dim = 2
    control_hz = 50.0

    def __init__(self, steps: int = 30) -> None:
        self.steps = steps

    def reset(self, seed=None):
        self.x = np.random.default_rng(seed).normal(size=2)
        self.t = 0
        return self.x.copy(), {}

    def step(self, action):
        assert np.all(np.abs(action) <= 1.0 + 1e-12), "unsafe action reached the env"
        self.x = self.x + 0.1 * np.asarray(action)
        self.t += 1
        return self.x.copy(), -float(np.abs(self.x).sum()), False, self.t >= self.steps, {}

    def get_physics_state(self):
        return np.r_[self.t, self.x]

    def close(self):
        pass


@dataclass
class FakeReply:
    action: np.ndarray
    action_chunk: np.ndarray
    next_states: np.ndarray
    model_id: str = "fake@1"
    ok: bool = True


class ScriptedPolicy:
    """Answers a = -x (clipped by the controller), taking ``latency_s`` of simulated time;
    ``down`` ticks get no reply at all."""

    def __init__(self, clock: SimulatedClock, latency_s: float = 0.002, down=()):
        self.clock, self.latency_s, self.down = clock, latency_s, set(down)
        self.requests: list[dict[str, Any]] = []
        self.abandoned = 0

    def submit(self, mode, state, **fields):
        self.requests.append({"mode": mode, "state": state, **fields})
        return len(self.requests)

    def poll(self, request_id, timeout_ms=0.0):
        if request_id - 1 in self.down:
            self.clock.advance(timeout_ms / 1e3)
            return None
        if self.latency_s > timeout_ms / 1e3:
            self.clock.advance(timeout_ms / 1e3)
            return None
        self.clock.advance(self.latency_s)
        x = self.requests[request_id - 1]["state"]
        a = -3.0 * x
        chunk = np.stack([a, a * 0.5, a * 0.25])
        return FakeReply(a, chunk, np.stack([x + 0.1 * np.clip(a, -1, 1)]))

    def abandon(self, request_id):
        self.abandoned += 1


def _controller(policy_down=(), latency_s=0.002, **cfg):
    clock = SimulatedClock()
    policy = ScriptedPolicy(clock, latency_s, policy_down)
    config = ControllerConfig(mode="return_conditioned", target_return=1.0, **cfg)
    return Controller(ToyEnv(), policy, config, clock=clock), policy


def test_replies_in_time_are_applied_clipped_and_predicted_states_give_zero_surprise():
    controller, policy = _controller()
    result = controller.run_episode(seed=0)
    summary = result.summary()
    assert result.ticks == 30
    assert summary["deadline_misses"] == 0
    assert np.all(np.abs(result.actions) <= 1.0)
    assert summary["surprise_mean"] == pytest.approx(0.0, abs=1e-12)
    assert policy.requests[0]["return_target"] == 1.0
    assert len(policy.requests[5]["history_states"]) == 2
    periods = result.telemetry.arrays()["period_s"]
    np.testing.assert_allclose(periods, 1 / 50.0)


def test_missed_deadlines_walk_down_the_fallback_ladder_and_recover():
    down = range(5, 20)  # the node is gone for 15 ticks
    controller, policy = _controller(
        policy_down=down, fallback=FallbackConfig(hold_ticks=2, decay_ticks=4, safe_after_misses=12)
    )
    result = controller.run_episode(seed=1)
    levels = result.telemetry.level
    assert levels[:5] == ["model"] * 5
    assert levels[5:7] == ["chunk", "chunk"]  # the rest of tick 4's chunk
    assert levels[7:9] == ["hold", "hold"]
    assert levels[9:16] == ["decay"] * 7
    assert levels[16:20] == ["safe"] * 4
    assert levels[20:] == ["model"] * 10  # recovered
    assert policy.abandoned == 15
    summary = result.summary()
    assert summary["deadline_misses"] == 15
    assert summary["fallback_ticks"] == {"chunk": 2, "hold": 2, "decay": 7, "safe": 4}
    # the loop kept its rate through the outage
    np.testing.assert_allclose(result.telemetry.arrays()["period_s"], 1 / 50.0)


def test_a_slow_policy_misses_in_realtime_but_lockstep_waits():
    slow, _ = _controller(latency_s=0.05)  # 50 ms > the 20 ms period
    assert slow.run_episode(seed=0).summary()["deadline_misses"] == 30
    lockstep, _ = _controller(latency_s=0.05, realtime=False)
    a = lockstep.run_episode(seed=0)
    assert a.summary()["deadline_misses"] == 0
    again, _ = _controller(latency_s=0.05, realtime=False)
    np.testing.assert_array_equal(a.actions, again.run_episode(seed=0).actions)


def test_inverse_dynamics_sends_desired_states_from_the_reference():
    clock = SimulatedClock()
    policy = ScriptedPolicy(clock)
    ref = ReferenceTrajectory(np.cumsum(np.ones((40, 2)) * 0.05, axis=0), indexing="time")
    controller = Controller(
        ToyEnv(), policy, ControllerConfig(mode="inverse_dynamics"), reference=ref, clock=clock
    )
    controller.run_episode(seed=0)
    np.testing.assert_allclose(policy.requests[3]["future_states"], ref.states[[4, 5]])
    with pytest.raises(ValueError, match="reference"):
        Controller(ToyEnv(), policy, ControllerConfig(mode="inverse_dynamics"))
    with pytest.raises(ValueError, match="dim 3"):
        Controller(
            ToyEnv(),
            policy,
            ControllerConfig(mode="inverse_dynamics"),
            reference=ReferenceTrajectory(np.zeros((5, 3))),
        )


def test_nearest_reference_indexing_follows_the_state_not_the_clock():
    states = np.stack([np.linspace(0, 1, 21), np.zeros(21)], axis=1)
    ref = ReferenceTrajectory(states, indexing="nearest")
    np.testing.assert_allclose(ref.desired(0, np.array([0.5, 0.0])), states[[11]])


def test_safety_clips_rate_limits_and_replaces_nan():
    limits = SafetyLimits(-np.ones(2), np.ones(2), max_delta=0.1)
    out = limits.apply(np.array([5.0, -0.05]), np.zeros(2), np.zeros(2))
    np.testing.assert_allclose(out, [0.1, -0.05])
    out = limits.apply(np.array([np.nan, 0.0]), np.zeros(2), np.full(2, 0.02))
    np.testing.assert_allclose(out, [0.02, 0.02])
    assert (limits.clipped_ticks, limits.rate_limited_ticks, limits.rejected_ticks) == (1, 1, 1)


def test_fallback_without_chunk_holds_then_decays_to_neutral():
    ladder = FallbackLadder(
        FallbackConfig(use_chunk=False, hold_ticks=1, decay_ticks=2, safe_after_misses=100),
        np.zeros(1),
        np.zeros(1),
    )
    ladder.on_reply(np.ones((3, 1)))
    out = [ladder.on_miss(np.ones(1)) for _ in range(4)]
    assert [lv for _, lv in out] == ["hold", "decay", "decay", "decay"]
    np.testing.assert_allclose([a[0] for a, _ in out], [1.0, 0.5, 0.0, 0.0])


def test_controllers_import_neither_torch_nor_the_model():
    import subprocess

    code = (
        "import sys, controllers.loop, controllers.timing, controllers.fallback; "
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('mtm_robot.model')]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


class ListObserver:
    """Keeps what a :class:`~controllers.loop.TickObserver` is told."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_episode_start(self, seed):
        self.events.append(("start", seed))

    def on_tick(self, step, tick):
        self.events.append(("tick", (step, tick)))

    def on_episode_end(self, result):
        self.events.append(("end", result))


class BrokenObserver(ListObserver):
    def on_tick(self, step, tick):
        raise RuntimeError("viewer gone")


def test_telemetry_keeps_states_targets_and_predictions_and_observers_see_every_tick():
    clock = SimulatedClock()
    policy = ScriptedPolicy(clock, down=[3])
    ref = ReferenceTrajectory(np.cumsum(np.ones((40, 2)) * 0.05, axis=0), indexing="time")
    seen, broken = ListObserver(), BrokenObserver()
    controller = Controller(
        ToyEnv(),
        policy,
        ControllerConfig(mode="inverse_dynamics", deadline_margin_ms=2.0),
        reference=ref,
        clock=clock,
        observers=[broken, seen],
    )
    result = controller.run_episode(seed=0)
    tel = result.telemetry.arrays()
    assert tel["state"].shape == tel["target"].shape == tel["predicted"].shape == (30, 2)
    np.testing.assert_allclose(tel["state"], result.states)
    np.testing.assert_allclose(tel["target"], ref.states[1:31])  # time indexing: step + 1
    np.testing.assert_allclose(tel["target"][5], policy.requests[5]["future_states"][0])
    assert np.isnan(tel["predicted"][3]).all()  # no reply on tick 3: no prediction
    np.testing.assert_allclose(tel["predicted"][4], tel["state"][5])  # the toy model is exact
    assert result.budget_s == pytest.approx(1 / 50 - 0.002) and result.realtime
    # the observer saw the start, every tick's record in order, the result; the broken one
    # was dropped after its first failure and the loop went on
    kinds = [kind for kind, _ in seen.events]
    assert kinds == ["start"] + ["tick"] * 30 + ["end"]
    assert [step for step, _ in (e for k, e in seen.events if k == "tick")] == list(range(30))
    assert seen.events[-1][1] is result
    assert controller.observers == [seen]
    other, _ = _controller()
    assert np.isnan(other.run_episode(seed=0).telemetry.arrays()["target"]).all()
