from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from controllers.recorder import EpisodeRecorder, RecorderConfig, recover_partial
from mtm_robot.data.episodes import episode_paths, load_episode

ROOT = Path(__file__).resolve().parents[2]


def _steps(recorder: EpisodeRecorder, n: int, with_actions: bool = True) -> None:
    for t in range(n):
        recorder.record(
            np.full(3, t),
            np.full(2, -t) if with_actions else None,
            1.0,
            np.full(4, t),
            t * 0.025,
            latency_s=0.001 * t,
            level="model",
            model_id="m@1",
            requested=np.zeros(2),
            surprise=0.5,
        )


def test_episodes_with_telemetry_and_action_free(tmp_path):
    with EpisodeRecorder(tmp_path) as rec:
        rec.begin({"task": "toy", "seed": 1})
        _steps(rec, 25)
        rec.end(terminated=False, truncated=True)
        rec.begin({"task": "toy", "seed": 2})
        _steps(rec, 7, with_actions=False)
        rec.end(terminated=True, truncated=False)
    a, b = (load_episode(p) for p in episode_paths(tmp_path))
    assert a.states.shape == (25, 3)
    np.testing.assert_array_equal(a.actions[:, 0], -np.arange(25))
    assert a.telemetry["level"].tolist() == ["model"] * 25
    np.testing.assert_allclose(a.telemetry["latency_s"], 0.001 * np.arange(25))
    assert a.meta["complete"] is True
    assert a.meta["truncated"] is True
    assert b.actions is None
    assert b.meta["seed"] == 2
    assert not list(tmp_path.glob("*.part_*"))


def test_a_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    rec = EpisodeRecorder(tmp_path, RecorderConfig(queue_size=4))
    rec.begin({"task": "toy"})
    start = time.perf_counter()
    _steps(rec, 2000)
    elapsed = time.perf_counter() - start
    rec.end()
    rec.close()
    episode = load_episode(episode_paths(tmp_path)[0])
    assert rec.dropped_steps > 0
    assert len(episode) + rec.dropped_steps == 2000
    assert elapsed < 5.0  # generous: the point is that it returned, not how fast


def test_recover_partial_merges_chunks_of_an_unfinished_episode(tmp_path):
    rec = EpisodeRecorder(tmp_path, RecorderConfig(flush_interval_s=0.05))
    rec.begin({"task": "toy"})
    _steps(rec, 10)
    deadline = time.monotonic() + 5
    while rec.flushes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(tmp_path.glob("episode_000000.part_*.npz"))
    # simulate a crash: the writer never sees "end"; recovery happens on the next start
    recovered = recover_partial(tmp_path)
    assert len(recovered) == 1
    episode = load_episode(recovered[0])
    assert len(episode) == 10
    assert episode.meta["complete"] is False
    assert episode.meta["task"] == "toy"


CRASHING_CONTROLLER = r"""
import sys, numpy as np
sys.path.insert(0, {root!r})
from controllers.loop import Controller, ControllerConfig
from controllers.recorder import EpisodeRecorder, RecorderConfig
from tests.controllers.test_loop import ToyEnv, FakeReply

class Instant:
    def submit(self, mode, state, **f):
        self.state = state
        return 1
    def poll(self, rid, timeout_ms=0.0):
        a = -self.state
        return FakeReply(a, a[None], (self.state + 0.1 * np.clip(a, -1, 1))[None])
    def abandon(self, rid):
        pass

recorder = EpisodeRecorder({out!r}, RecorderConfig(flush_interval_s=0.25))
controller = Controller(ToyEnv(steps=40), Instant(),
                        ControllerConfig(target_return=1.0, control_hz=80.0), recorder=recorder)
for seed in range(100):
    controller.run_episode(seed)
    print("episode", seed, flush=True)
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kill_9_the_controller_mid_recording(tmp_path):
    out = tmp_path / "store"
    script = CRASHING_CONTROLLER.format(root=str(ROOT), out=str(out))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for _ in range(3):  # three complete episodes (0.5 s each at 80 Hz)
        assert proc.stdout.readline().startswith("episode")
    time.sleep(0.4)  # well into the fourth
    killed_at = time.monotonic()
    proc.kill()
    proc.wait()
    complete = [load_episode(p) for p in episode_paths(out)]
    assert len(complete) >= 3
    assert all(len(e) == 40 and e.meta["complete"] for e in complete)
    recovered = recover_partial(out)
    assert len(recovered) == 1
    partial = load_episode(recovered[0])
    assert partial.meta["complete"] is False
    # at most one flush interval (0.25 s = 20 ticks at 80 Hz) plus scheduling slack is lost
    steps_before_kill = 0.4 * 80
    assert len(partial) >= steps_before_kill - 20 - 8
    assert time.monotonic() - killed_at < 60


def test_steps_without_reward_and_closing_metadata(tmp_path):
    with EpisodeRecorder(tmp_path) as rec:
        rec.begin({"task": "toy"})
        for t in range(5):
            rec.record(np.full(3, t), None, None, None, t * 0.1)
        rec.end(complete=False, reason="operator stopped", truncated=True)
    episode = load_episode(episode_paths(tmp_path)[0])
    assert episode.rewards is None
    assert episode.actions is None
    assert episode.meta["reason"] == "operator stopped"
    assert episode.meta["complete"] is True  # the recorder decides: it saw the end
    assert rec.errors == []


def _wait_for(condition, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_full_disk_stops_writing_keeps_what_was_written_and_says_so(tmp_path, monkeypatch):
    """Issue 13: the idle-branch flush raised ENOSPC outside the try and the writer died."""
    from tests.test_atomic import full_disk_after

    rec = EpisodeRecorder(tmp_path, RecorderConfig(flush_interval_s=0.05))
    rec.begin({"task": "toy", "seed": 0})
    _steps(rec, 20)
    rec.end()
    rec.begin({"task": "toy", "seed": 1})
    _steps(rec, 10)
    _wait_for(lambda: rec.episodes_written == 1 and rec.flushes == 2)  # ep 0 + a part of ep 1
    full_disk_after(monkeypatch, 0)
    _steps(rec, 10)  # the idle flush of these steps hits the full disk
    _wait_for(lambda: bool(rec.error))
    assert "No space left on device" in rec.error
    rec.end()
    rec.begin({"task": "toy", "seed": 2})
    assert not rec.record(np.zeros(3), None, None, None, 0.0)  # nothing more is written
    rec.end()
    rec.close(timeout_s=10)
    assert not rec._thread.is_alive()
    monkeypatch.undo()  # space freed
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
    [complete] = [load_episode(p) for p in episode_paths(tmp_path)]
    assert len(complete) == 20 and complete.meta["complete"] is True
    [partial] = recover_partial(tmp_path)  # episode 1 up to its last good flush
    episode = load_episode(partial)
    assert len(episode) == 10 and episode.meta["complete"] is False
    assert episode.meta["seed"] == 1
    assert len(episode_paths(tmp_path)) == 2  # episode 2 was never written
