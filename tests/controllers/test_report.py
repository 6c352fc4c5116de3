"""The run directory's plots (issue 16, item 5): a deadline on the latency histogram, x axes in
seconds (realtime) or ticks (lockstep), a tracking-error figure for inverse_dynamics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from controllers.loop import Controller, ControllerConfig
from controllers.reference import ReferenceTrajectory
from controllers.report import session_figure, tracking_error, tracking_figure, write_run_dir
from controllers.session import SessionResult
from controllers.timing import SimulatedClock

from .test_loop import ScriptedPolicy, ToyEnv

pytest.importorskip("matplotlib")


def _session(mode: str = "return_conditioned", realtime: bool = True, episodes: int = 2):
    clock = SimulatedClock()
    reference = None
    if mode == "inverse_dynamics":
        reference = ReferenceTrajectory(np.cumsum(np.ones((40, 2)) * 0.05, axis=0), "time")
    config = ControllerConfig(
        mode=mode, target_return=1.0, realtime=realtime, deadline_margin_ms=2.0
    )
    controller = Controller(
        ToyEnv(), ScriptedPolicy(clock, down=[6, 7, 8]), config, reference, clock=clock
    )
    results = [controller.run_episode(seed) for seed in range(episodes)]
    summaries = [dict(r.summary(), normalized_score=float("nan")) for r in results]
    return SessionResult("toy", {"model_id": "fake@1"}, results, summaries, 1.0)


def _deadlines(fig) -> list[tuple[str, np.ndarray, np.ndarray]]:
    return [
        (ax.get_title(), np.asarray(line.get_xdata()), np.asarray(line.get_ydata()))
        for ax in fig.axes
        for line in ax.get_lines()
        if line.get_gid() == "deadline"
    ]


def test_realtime_latency_histogram_has_the_deadline_and_x_is_seconds(tmp_path: Path):
    result = _session()
    fig = session_figure(result)
    deadline = [d for d in _deadlines(fig) if d[0].startswith("request latency")]
    assert len(deadline) == 1
    np.testing.assert_allclose(deadline[0][1], 1e3 / 50 - 2.0)  # period less the margin, ms
    assert "3 of 60 ticks missed" in deadline[0][0]
    timing = next(ax for ax in fig.axes if ax.get_title() == "loop period per tick")
    assert timing.get_xlabel() == "time in episode (s)"
    x = timing.get_lines()[0].get_xdata()
    np.testing.assert_allclose(x, np.arange(30) / 50.0)  # seconds since the episode started
    written = write_run_dir(result, tmp_path)
    assert written["ticks"] == 60
    assert (tmp_path / "session.png").stat().st_size > 10_000
    assert not (tmp_path / "tracking.png").exists()  # nothing tracked a reference
    telemetry = np.load(tmp_path / "telemetry_001.npz")
    assert telemetry["state"].shape == (30, 2)


def test_lockstep_plots_latency_per_tick_index_against_the_deadline():
    fig = session_figure(_session(realtime=False, episodes=1))
    timing = next(ax for ax in fig.axes if ax.get_title() == "request latency per tick")
    assert timing.get_xlabel().startswith("tick (lockstep")
    np.testing.assert_array_equal(timing.get_lines()[0].get_xdata(), np.arange(30))
    deadlines = {title: (x, y) for title, x, y in _deadlines(fig)}
    assert sorted(deadlines) == [
        "request latency per tick",
        "request latency: 3 of 30 ticks missed their deadline",
    ]
    np.testing.assert_allclose(deadlines["request latency per tick"][1], 18.0)  # horizontal
    score = next(ax for ax in fig.axes if ax.get_title() == "return per episode")
    assert [t.get_text() for t in score.get_xticklabels()] == ["0\nseed 0"]


def test_inverse_dynamics_runs_get_a_tracking_error_figure(tmp_path: Path):
    result = _session("inverse_dynamics")
    episode = result.episodes[0]
    tel = episode.telemetry.arrays()
    error = tracking_error(episode)
    scale = tel["target"].std(axis=0)
    expected = np.sqrt(np.mean(((tel["state"][1:] - tel["target"][:-1]) / scale) ** 2, axis=1))
    np.testing.assert_allclose(error, expected)
    assert error.shape == (29,) and np.all(error >= 0)
    fig = tracking_figure(result)
    assert fig is not None
    error_ax, states_ax = fig.axes
    np.testing.assert_allclose(error_ax.get_lines()[0].get_ydata(), error)
    assert len(states_ax.get_lines()) == 4  # 2 dims: reached and asked for
    assert tracking_figure(_session()) is None
    write_run_dir(result, tmp_path)
    assert (tmp_path / "tracking.png").is_file()
