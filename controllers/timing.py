"""The loop timer: the one pacing mechanism of every fixed-rate loop in this package.

Deadlines are absolute (``start + n * period`` on a monotonic clock), so sleeping never drifts.
An overrun skips the ticks whose deadline already passed, never bursts to catch up. The clock
is injectable, so tests run a loop on simulated time without sleeping.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def sleep_until(self, t: float) -> None:
        """Return at (or just after) time ``t``; immediately if ``t`` has passed."""
        ...


class MonotonicClock:
    """Wall time: ``time.perf_counter``; sleeps coarse then spins the last ``spin_s``."""

    def __init__(self, spin_s: float = 0.0005) -> None:
        self.spin_s = spin_s

    def now(self) -> float:
        return time.perf_counter()

    def sleep_until(self, t: float) -> None:
        remaining = t - time.perf_counter()
        if remaining > self.spin_s:
            time.sleep(remaining - self.spin_s)
        while time.perf_counter() < t:
            pass


class SimulatedClock:
    """Time that only moves when told to: for lockstep runs and tests."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def sleep_until(self, t: float) -> None:
        self.t = max(self.t, t)

    def advance(self, dt: float) -> None:
        self.t += dt


@dataclass
class Tick:
    """One tick of a :class:`LoopTimer`."""

    index: int  # tick number since start (skipped ticks count)
    deadline_s: float  # when this tick was due
    started_s: float  # when it actually started
    skipped: int  # ticks skipped just before this one (overrun)

    @property
    def lateness_s(self) -> float:
        return self.started_s - self.deadline_s


class LoopTimer:
    """Paces a loop at ``rate_hz`` with absolute deadlines."""

    def __init__(self, rate_hz: float, clock: Clock | None = None) -> None:
        if not (rate_hz > 0 and math.isfinite(rate_hz)):
            raise ValueError(f"rate_hz must be a positive number, got {rate_hz}")
        self.period_s = 1.0 / rate_hz
        self.clock: Clock = clock or MonotonicClock()
        self._start: float | None = None
        self._next_index = 0
        self.skipped_total = 0

    def wait(self) -> Tick:
        """Block until the next due tick and return it (the first call starts the schedule)."""
        now = self.clock.now()
        if self._start is None:
            self._start = now
            self._next_index = 1
            return Tick(0, now, now, 0)
        index = self._next_index
        deadline = self._start + index * self.period_s
        skipped = 0
        if now > deadline + self.period_s:  # overrun past a whole period: skip, don't burst
            late_index = int((now - self._start) / self.period_s)
            skipped = late_index + 1 - index
            index = late_index + 1
            deadline = self._start + index * self.period_s
        self.clock.sleep_until(deadline)
        self._next_index = index + 1
        self.skipped_total += skipped
        return Tick(index, deadline, self.clock.now(), skipped)

    def next_deadline(self) -> float:
        """When the next tick is due (the budget end of the current one)."""
        if self._start is None:
            return self.clock.now()
        return self._start + self._next_index * self.period_s


def set_realtime_priority(priority: int, pid: int = 0) -> bool:
    """Put process ``pid`` (0: this one) under SCHED_FIFO at ``priority`` (1-99).

    Keeps a loop on time when the machine is busy. Needs root or CAP_SYS_NICE; returns False
    (and changes nothing) where the OS does not allow it. The kernel's RT throttling still
    reserves a share of each second for other processes.
    """
    if priority <= 0:
        return False
    if not hasattr(os, "sched_setscheduler"):
        return False
    try:
        os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(priority))
    except (PermissionError, OSError):
        return False
    return True
