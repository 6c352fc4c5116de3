"""Latency budget and return-target sweep on a toy environment with an in-process policy."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.latency import (
    LatencyConfig,
    RateTrial,
    _ceil_tenth,
    _choose_rate,
    _fallback,
    measure_latency,
)
from calibration.return_target import ReturnTargetConfig, return_range, sweep_return_target
from mtm_robot.errors import MTMRobotError
from tests.calibration.fakes import FakeClient, ToyEnv

METADATA = {"model_id": "fake", "return_stats": {"return_min": 0.0, "return_max": 0.5}}


def _trial(rate: float, feasible: bool, misses: float = 0.0) -> RateTrial:
    return RateTrial(rate, 100, misses, 0, 1.0, 2.0, 0.1, feasible)


def test_rate_choice_prefers_the_task_rate_then_the_fastest_slower_one():
    rate, ok, notes = _choose_rate([_trial(20, True), _trial(40, True), _trial(80, True)], 40)
    assert (rate, ok) == (40, True)
    assert "headroom" in notes[0] and "80 Hz" in notes[0]
    rate, ok, notes = _choose_rate([_trial(10, True), _trial(20, True), _trial(40, False)], 40)
    assert (rate, ok) == (20, True)
    assert "40 Hz misses its budget" in notes[0]
    trials = [_trial(20, False, 0.05), _trial(40, False, 0.5)]
    rate, ok, notes = _choose_rate(trials, 40)
    assert (rate, ok) == (20, False)
    assert "no candidate rate meets the budget" in notes[0]


def test_fallback_rules_follow_the_round_trip_and_the_rate():
    c = LatencyConfig(decay_s=0.2, safe_after_s=1.0)
    fb = _fallback(rtt_max_ms=3.0, rate_hz=40.0, c=c)
    assert (fb.hold_ticks, fb.decay_ticks, fb.safe_after_misses) == (1, 8, 40)
    fb = _fallback(rtt_max_ms=60.0, rate_hz=40.0, c=c)  # a 60 ms spike spans 3 ticks of 25 ms
    assert fb.hold_ticks == 3
    fb = _fallback(rtt_max_ms=1.0, rate_hz=4.0, c=c)
    assert (fb.decay_ticks, fb.safe_after_misses) == (1, 4)
    assert _ceil_tenth(0.81) == 0.9 and _ceil_tenth(0.8) == 0.8


def test_measure_latency_runs_the_real_loop_and_recommends():
    config = LatencyConfig(
        rates_hz=[100.0, 50.0, 200.0],
        round_trips=20,
        work_samples=20,
        timer_ticks=10,
        ticks_per_rate=10,
    )
    client = FakeClient()
    result = measure_latency(ToyEnv(steps=1000), client, "return_conditioned", 0.4, config)
    assert [t.rate_hz for t in result.trials] == [50.0, 100.0, 200.0]
    assert all(t.ticks == 10 for t in result.trials)
    assert len(result.round_trip_ms) == 20 and np.all(result.round_trip_ms > 0)
    assert result.deadline_margin_ms > 0
    assert result.request_deadline_ms == pytest.approx(20.0 - result.deadline_margin_ms)
    assert result.control_hz in (50.0, 100.0, 200.0)
    # requests carry what the loop sends: history and the target
    assert client.requests[0]["return_target"] == 0.4
    assert client.requests[0]["history_states"].shape == (2, 2)
    summary = result.to_dict()
    assert summary["recommended"]["fallback"]["decay_ticks"] == round(0.2 * result.control_hz)


def test_return_target_sweep_picks_the_best_fraction_on_shared_seeds():
    config = ReturnTargetConfig(fractions=[0.2, 0.5, 0.8, 1.0], episodes=3, seed=7)
    # target = 0.5 p; the fake policy is best at target 0.4 (deadbeat): p = 0.8
    result = sweep_return_target(
        ToyEnv(), FakeClient(), METADATA, config=config, score=lambda r: 2 * r
    )
    assert result.targets == pytest.approx([0.1, 0.25, 0.4, 0.5])
    assert result.best_fraction == 0.8
    assert result.best_target == pytest.approx(0.4)
    assert result.returns.shape == (4, 3)
    assert result.seeds == [7, 8, 9]
    assert result.scores is not None
    np.testing.assert_allclose(result.scores, 2 * result.returns)
    assert result.to_dict()["best"]["fraction"] == 0.8
    assert result.notes == []
    edge = sweep_return_target(
        ToyEnv(), FakeClient(), METADATA, config=ReturnTargetConfig([0.2, 0.4])
    )
    assert edge.best_fraction == 0.4
    assert "0.4 is at the edge of the sweep" in edge.notes[0]


def test_return_target_needs_a_return_range_and_a_target_mode():
    with pytest.raises(MTMRobotError, match=r"model 'm' has no return_stats"):
        return_range({"model_id": "m"})
    with pytest.raises(MTMRobotError, match=r"not behavior_cloning"):
        sweep_return_target(ToyEnv(), FakeClient(), METADATA, mode="behavior_cloning")
    with pytest.raises(ValueError, match=r"episodes must be >= 1, got 0"):
        ReturnTargetConfig(episodes=0)
    with pytest.raises(ValueError, match=r"rates_hz must be positive numbers, got \[-1.0\]"):
        LatencyConfig(rates_hz=[-1.0])
