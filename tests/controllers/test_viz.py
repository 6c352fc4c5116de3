"""The rerun live view (issue 16, item 5): every tick of a session in an ``.rrd`` that rerun's
own reader reads back; the control thread only queues."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from controllers.loop import Controller, ControllerConfig
from controllers.reference import ReferenceTrajectory
from controllers.session import SessionConfig
from controllers.timing import SimulatedClock
from mtm_robot.errors import ConfigError

from .test_loop import ScriptedPolicy, ToyEnv

rr = pytest.importorskip("rerun")
from controllers.viz import ENTITIES, RerunView  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def read_rrd(path: Path) -> dict[str, list[int]]:
    """entity path -> the ``tick`` of each row, read with rerun's own reader."""
    from rerun.chunk import RrdReader

    ticks: dict[str, list[int]] = defaultdict(list)
    for chunk in RrdReader(path).store().stream().to_chunks():
        if chunk.is_static or "tick" not in chunk.timeline_names:
            continue
        column = chunk.to_record_batch().column("tick")
        ticks[str(chunk.entity_path).lstrip("/")] += [int(t) for t in column.to_pylist()]
    return {entity: sorted(t) for entity, t in ticks.items()}


def test_every_tick_of_two_episodes_reads_back_with_frames_every_nth_tick(tmp_path):
    rendered: list[int] = []

    def render(physics: np.ndarray, stride: int):
        for state in physics[::stride]:
            rendered.append(int(state[0]))  # ToyEnv's physics starts with the step
            yield np.full((12, 16, 3), 100, np.uint8)

    clock = SimulatedClock()
    path = tmp_path / "view" / "run.rrd"
    view = RerunView(str(path), task="toy", render_frames=render, frames_every=10, budget_s=0.019)
    ref = ReferenceTrajectory(np.cumsum(np.ones((40, 2)) * 0.05, axis=0), indexing="time")
    controller = Controller(
        ToyEnv(),
        ScriptedPolicy(clock, down=[3, 4]),  # requests 3 and 4 get no reply: two misses
        ControllerConfig(mode="inverse_dynamics"),
        reference=ref,
        clock=clock,
        keep_physics=True,
        observers=[view],
    )
    for seed in (0, 1):
        controller.run_episode(seed)
    view.close()
    assert view.dropped_ticks == 0 and view.logged_ticks == 60
    rows = read_rrd(path)
    assert set(ENTITIES) - {"reward"} <= set(rows), sorted(rows)
    for entity in ("state/observed", "state/target", "action/applied", "fallback/level"):
        assert rows[entity] == list(range(60)), entity  # one row per tick, session-wide ticks
    assert rows["timing/latency_ms"] == [t for t in range(60) if t not in (3, 4)]
    assert len(rows["state/predicted"]) == 58  # no prediction without a reply
    assert rows["camera"] == [0, 10, 20, 30, 40, 50]  # after each episode, every 10th tick
    assert rendered == [0, 10, 20] * 2
    assert len(rows["events"]) >= 4  # level changes and episode ends


def test_a_view_target_is_checked_before_anything_runs():
    with pytest.raises(ConfigError, match=r"viz must be a FILE\.rrd, 'live'.*got 'view\.mp4'"):
        SessionConfig(viz="view.mp4")
    with pytest.raises(ValueError, match="viz_frames_every"):
        SessionConfig(viz="a.rrd", viz_frames_every=-1)
    SessionConfig(viz="rerun+http://127.0.0.1:9876/proxy")


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_sim_control_viz_writes_an_rrd_of_the_run(tmp_path):
    from .test_sim_control import _checkpoint

    checkpoint = _checkpoint(tmp_path / "ck")
    out = tmp_path / "view.rrd"
    cmd = [
        sys.executable,
        str(ROOT / "launch/sim_control.py"),
        "--checkpoint",
        str(checkpoint),
        "--episodes",
        "1",
        "--lockstep",
        "--max-steps",
        "30",
        "--viz",
        str(out),
        "--viz-frames-every",
        "10",
        "--out",
        str(tmp_path / "run"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=230, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = read_rrd(out)
    for entity in ("state/observed", "action/requested", "fallback/miss", "node/down", "reward"):
        assert rows[entity] == list(range(30)), entity
    assert rows["camera"] == [0, 10, 20]
    assert "timing/budget_ms" not in rows  # lockstep: no realtime budget


def test_live_without_a_display_says_what_to_do_instead(monkeypatch, tmp_path):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(ConfigError, match=r"no display.*FILE\.rrd.*rerun\+http://HOST:9876"):
        RerunView("live")
