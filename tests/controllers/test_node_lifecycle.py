"""The session watches the node it owns (issue 12, defect 7): a death is reported, lockstep
never waits on a dead node, and the run resumes after a restart or ends with the reason."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from controllers import session as session_module
from controllers.loop import Controller, ControllerConfig
from controllers.report import write_run_dir
from controllers.session import SessionConfig, run_session
from controllers.timing import SimulatedClock
from mtm_robot_client import NodeClient

from .test_loop import ScriptedPolicy, ToyEnv
from .test_sim_control import _checkpoint


class FakeWatch:
    """A node watch driven by the test: ``die()``, ``restart()``, ``lose(reason)``."""

    def __init__(self) -> None:
        self.down = False
        self.generation = 0
        self.lost_reason = ""

    def die(self) -> None:
        self.down = True

    def restart(self) -> None:
        self.generation += 1
        self.down = False

    def lose(self, reason: str) -> None:
        self.lost_reason = reason


class DyingPolicy(ScriptedPolicy):
    """Stops answering from request ``die_at`` on (the node died), like a real dead node: a poll
    waits its whole timeout. ``on_death`` runs once, at the first unanswered poll."""

    def __init__(self, clock, die_at: int, on_death, revive_after: int | None = None):
        super().__init__(clock)
        self.die_at, self.on_death, self.revive_after = die_at, on_death, revive_after
        self.dead_polls = 0
        self.waited_s = 0.0

    def poll(self, request_id, timeout_ms=0.0):
        dead = request_id - 1 >= self.die_at and (
            self.revive_after is None or self.dead_polls < self.revive_after
        )
        if dead:
            if self.dead_polls == 0:
                self.on_death()
            self.dead_polls += 1
            self.waited_s += timeout_ms / 1e3  # a real poll would block this long
            return None
        return super().poll(request_id, timeout_ms)


def _lockstep(policy_factory, watch, steps=30):
    clock = SimulatedClock()
    policy = policy_factory(clock)
    config = ControllerConfig(target_return=1.0, realtime=False, lockstep_timeout_ms=10_000)
    return Controller(ToyEnv(steps), policy, config, clock=clock, node=watch), policy


def test_lockstep_ends_at_once_when_the_node_is_lost():
    watch = FakeWatch()

    def death():
        watch.die()
        watch.lose("the inference node (pid 1) died: killed by SIGKILL; no restart left")

    controller, policy = _lockstep(lambda c: DyingPolicy(c, 10, death), watch)
    result = controller.run_episode(seed=0)
    assert result.ticks == 10  # ended at the tick the node died, not after 20 timeouts
    assert "killed by SIGKILL" in result.ended_by
    assert result.summary()["ended_by"] == result.ended_by
    assert policy.waited_s <= 0.05 + 1e-9  # one 50 ms slice, never the 10 s timeout


def test_lockstep_resends_after_a_restart_and_completes():
    watch = FakeWatch()
    state = {}

    def death():
        watch.die()
        # the supervisor restarts the node on its own thread a little later
        timer = threading.Timer(0.05, watch.restart)
        timer.start()
        state["timer"] = timer

    controller, policy = _lockstep(lambda c: DyingPolicy(c, 10, death, revive_after=1), watch)
    result = controller.run_episode(seed=0)
    state["timer"].join()
    assert result.ended_by == "" and result.ticks == 30
    assert result.summary()["deadline_misses"] == 0  # the request was resent, not missed
    assert len(policy.requests) == 31 and policy.abandoned == 1
    np.testing.assert_array_equal(policy.requests[10]["state"], policy.requests[11]["state"])


def test_realtime_falls_back_while_the_node_is_down_and_ends_when_it_is_lost():
    watch = FakeWatch()
    clock = SimulatedClock()
    policy = ScriptedPolicy(clock, down=range(5, 30))
    config = ControllerConfig(target_return=1.0, realtime=True)
    controller = Controller(ToyEnv(30), policy, config, clock=clock, node=watch)
    original_poll = policy.poll

    def poll(request_id, timeout_ms=0.0):
        if request_id == 6:
            watch.die()
        if request_id == 9:
            watch.lose("gone")
        return original_poll(request_id, timeout_ms)

    policy.poll = poll  # type: ignore[method-assign]
    result = controller.run_episode(seed=0)
    tel = result.telemetry.arrays()
    assert result.ended_by == "gone" and result.ticks == 9
    assert tel["node_down"].tolist() == [False] * 5 + [True] * 4  # it died during tick 5
    assert result.summary()["node_down_ticks"] == 4
    assert set(tel["level"][5:].tolist()) <= {"chunk", "hold", "decay", "safe"}


# -- with real processes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def walker_checkpoint(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ck") / "walker")


def _node_children() -> list[int]:
    """Pids of the node processes (python -m mtm_robot.serving) this test process started."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"mtm_robot.serving" in cmdline:
            found.append(int(entry))
    return found


class KillingClient(NodeClient):
    """Kills the session's node (SIGKILL, a crash) when the controller sends request ``at``."""

    at = 20
    killed: ClassVar[list[tuple[int, float]]] = []

    def submit(self, mode, state, wait_ms=0.0, **fields):
        self.sent = getattr(self, "sent", 0) + 1
        if self.sent == self.at:
            for pid in _node_children():
                os.kill(pid, signal.SIGKILL)
                KillingClient.killed.append((pid, time.monotonic()))
        return super().submit(mode, state, wait_ms, **fields)


def _run(monkeypatch, walker_checkpoint, tmp_path, restarts: int):
    KillingClient.killed = []
    monkeypatch.setattr(session_module, "NodeClient", KillingClient)
    config = SessionConfig(checkpoint=str(walker_checkpoint), episodes=2, node_restarts=restarts)
    config.controller.realtime = False
    config.controller.max_steps = 60
    result = run_session(config, tmp_path / "run", progress=False)
    summary = write_run_dir(result, tmp_path / "run")
    return result, json.loads((tmp_path / "run" / "summary.json").read_text()), summary


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_lockstep_run_ends_with_the_reason_when_the_node_dies(
    monkeypatch, walker_checkpoint, tmp_path
):
    result, summary, _ = _run(monkeypatch, walker_checkpoint, tmp_path, restarts=0)
    assert len(KillingClient.killed) == 1
    assert len(result.episodes) == 1 and result.episodes[0].ticks == 19  # no second episode
    assert "killed by SIGKILL" in summary["ended_by"]
    assert summary["per_episode"][0]["ended_by"] == summary["ended_by"]
    assert [e["event"] for e in summary["node_events"]] == ["died", "lost"]
    assert summary["node_events"][0]["pid"] == KillingClient.killed[0][0]
    assert not _node_children()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_lockstep_run_resumes_after_the_node_is_restarted(
    monkeypatch, walker_checkpoint, tmp_path, caplog
):
    _, summary, _ = _run(monkeypatch, walker_checkpoint, tmp_path, restarts=1)
    assert summary["ended_by"] == "" and summary["ticks"] == 120  # both episodes, in full
    assert summary["deadline_misses"] == 0  # the lost request was resent to the new node
    assert [e["event"] for e in summary["node_events"]] == ["died", "restarted"]
    telemetry = np.load(tmp_path / "run" / "telemetry_000.npz")
    assert telemetry["node_down"].sum() >= 1  # the tick that waited for the restart
    assert "died: killed by SIGKILL; restarting it (1 of 1)" in caplog.text
    assert not _node_children()
