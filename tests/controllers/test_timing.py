from __future__ import annotations

import pytest

from controllers.timing import LoopTimer, SimulatedClock


def test_absolute_deadlines_do_not_drift():
    clock = SimulatedClock()
    timer = LoopTimer(40.0, clock)
    starts = []
    for _ in range(1000):
        tick = timer.wait()
        starts.append(tick.started_s)
        clock.advance(0.0123)  # work shorter than a period
    assert starts[-1] == pytest.approx(999 / 40.0, abs=1e-9)
    assert timer.skipped_total == 0


def test_overrun_skips_ticks_instead_of_bursting():
    clock = SimulatedClock()
    timer = LoopTimer(100.0, clock)
    timer.wait()  # tick 0 at t=0
    clock.advance(0.035)  # a 35 ms overrun: ticks at 10, 20, 30 ms are missed
    tick = timer.wait()
    assert tick.skipped == 3
    assert tick.index == 4
    assert tick.started_s == pytest.approx(0.04)
    nxt = timer.wait()  # then back on the grid, no burst
    assert nxt.index == 5
    assert nxt.started_s == pytest.approx(0.05)


def test_small_lateness_runs_the_tick_late_without_skipping():
    clock = SimulatedClock()
    timer = LoopTimer(100.0, clock)
    timer.wait()
    clock.advance(0.015)
    tick = timer.wait()
    assert tick.skipped == 0
    assert tick.index == 1
    assert tick.lateness_s == pytest.approx(0.005)


def test_bad_rate_is_rejected():
    with pytest.raises(ValueError, match="rate_hz"):
        LoopTimer(0.0)
