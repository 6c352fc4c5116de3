"""Recording action-free demonstrations from real loopback sockets and from the sim expert."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from controllers.recorder import EpisodeRecorder, RecorderConfig, recover_partial
from mtm_robot.data.episodes import episode_paths, load_episode
from mtm_robot.serving.process import free_loopback_port
from mtm_robot.serving.state_stream import (
    StatePublisher,
    StateReceiver,
    StreamRecording,
    record_stream,
)
from mtm_robot_client import protocol

ROOT = Path(__file__).resolve().parents[2]
DIM = 24  # walker-walk


def _launch(name: str) -> ModuleType:
    """The command's module in the package (``launch/<name>.py`` is a shim over it)."""
    return importlib.import_module(f"mtm_robot.cli.{name}")


def _wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def _state(episode: int, t: int, dim: int = DIM) -> np.ndarray:
    return np.full(dim, episode * 1000 + t, dtype=np.float32)


@pytest.mark.timeout(30)
def test_faulty_streams_close_their_episodes_and_keep_what_was_recorded(tmp_path):
    recorder = EpisodeRecorder(tmp_path, RecorderConfig(flush_interval_s=0.05, poll_s=0.005))
    recording = StreamRecording(recorder, meta={"task": "walker-walk", "source": "zmq:test"})
    with StateReceiver("tcp://127.0.0.1:*", DIM) as receiver:
        summaries: list = []
        worker = threading.Thread(
            target=lambda: summaries.extend(
                record_stream(receiver, recording, episodes=4, timeout_s=0.3, poll_ms=20)
            )
        )
        worker.start()
        with StatePublisher(receiver.endpoint) as pub:
            for t in range(10):  # 0: clean, with rewards and an end message
                assert pub.send_state(0, t, _state(0, t), reward=0.5, t_s=t / 40)
            pub.send_end(0, truncated=True, reason="time limit")
            for t in range(6):  # 1: a state of the wrong dimension after 6 steps
                pub.send_state(1, t, _state(1, t))
            pub.send_state(1, 6, _state(1, 6, DIM - 1))
            for t in range(7, 10):
                pub.send_state(1, t, _state(1, t))  # discarded
            for t in range(4):  # 2: NaN at step 4
                pub.send_state(2, t, _state(2, t), reward=1.0)
            pub.send_frames(  # what a C++ sender writing NaN would put on the wire
                protocol.encode(
                    {"type": "state", "episode": "2", "step": 4},
                    {"state": np.full(DIM, np.nan, np.float32)},
                )
            )
            for t in range(5):  # 3: the sender goes silent (connection dropped)
                pub.send_state(3, t, _state(3, t), reward=1.0)
            worker.join(10)
        assert not worker.is_alive()
    recorder.close()
    paths = episode_paths(tmp_path)
    episodes = [load_episode(p) for p in paths]
    assert [(e.meta["stream_episode"], len(e), e.meta["reason"]) for e in episodes] == [
        ("0", 10, "end"),
        ("1", 6, protocol.BAD_SHAPE),
        ("2", 4, protocol.NOT_FINITE),
        ("3", 5, "timeout"),
    ]
    for i, e in enumerate(episodes):
        assert e.actions is None
        np.testing.assert_array_equal(e.states[:, 0], i * 1000 + np.arange(len(e)))
        assert e.meta["task"] == "walker-walk"
        assert e.meta["ended_cleanly"] is (i == 0)
    assert episodes[0].meta["truncated"] is True
    assert episodes[0].meta["reason_detail"] == "time limit"
    np.testing.assert_allclose(episodes[0].time_s, np.arange(10) / 40)
    np.testing.assert_allclose(episodes[0].rewards, 0.5)
    assert "expected [24], got [23]" in episodes[1].meta["reason_detail"]
    assert not list(tmp_path.glob("*.part_*"))
    assert recording.discarded == 3


@pytest.mark.timeout(30)
def test_episodes_without_rewards_are_written_without_a_rewards_array(tmp_path):
    record_demos = _launch("record_demos")
    recorder = EpisodeRecorder(tmp_path, RecorderConfig(flush_interval_s=0.05, poll_s=0.005))
    recording = StreamRecording(recorder)
    for t in range(8):
        recording.apply(record_demos.StateStep("a", t, _state(0, t)))
    recording.close("end")
    recorder.close()
    (path,) = episode_paths(tmp_path)
    assert record_demos.strip_unknown_rewards([path]) == 1
    episode = load_episode(path)
    assert episode.rewards is None and episode.actions is None
    assert len(episode) == 8
    assert record_demos.strip_unknown_rewards([path]) == 0


def _start_cli(out: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(ROOT / "launch" / "record_demos.py"), "--source", "zmq",
           "--out", str(out), "--bind", f"tcp://127.0.0.1:{port}", "--timeout-s", "5",
           "--flush-interval-s", "0.1", *extra]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_cli_sigterm_closes_the_open_episode_and_kill9_keeps_the_flushed_steps(tmp_path):
    port = free_loopback_port()
    proc = _start_cli(tmp_path / "term", port)
    try:
        with StatePublisher(f"tcp://127.0.0.1:{port}") as pub:
            for t in range(30):
                assert pub.send_state("run-1", t, _state(0, t), reward=1.0, timeout_ms=30_000)
            pub.send_end("run-1", terminated=True)
            for t in range(12):
                pub.send_state("run-2", t, _state(1, t), reward=1.0)
            _wait_for(lambda: (tmp_path / "term" / "episode_000000.npz").exists(), 30)
            _wait_for(lambda: any((tmp_path / "term").glob("episode_000001.part_*")), 10)
            proc.send_signal(signal.SIGTERM)
            output = proc.communicate(timeout=30)[0].decode()
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    first, second = (load_episode(p) for p in episode_paths(tmp_path / "term"))
    assert (len(first), first.meta["reason"], first.meta["terminated"]) == (30, "end", True)
    assert (len(second), second.meta["reason"]) == (12, "interrupted")
    assert second.actions is None
    assert "closed by interrupted" in output

    port = free_loopback_port()
    proc = _start_cli(tmp_path / "kill", port)
    try:
        with StatePublisher(f"tcp://127.0.0.1:{port}") as pub:
            for t in range(20):
                assert pub.send_state("run-3", t, _state(3, t), reward=1.0, timeout_ms=30_000)
            _wait_for(lambda: any((tmp_path / "kill").glob("episode_000000.part_*")), 30)
            proc.kill()  # SIGKILL: no clean close
            proc.wait(10)
    finally:
        proc.kill()
    (path,) = recover_partial(tmp_path / "kill")
    partial = load_episode(path)
    assert 1 <= len(partial) <= 20
    assert partial.meta["complete"] is False
    np.testing.assert_array_equal(partial.states[:, 0], 3000 + np.arange(len(partial)))


@pytest.mark.timeout(120)
def test_expert_demos_are_the_collect_recipe_without_actions(tmp_path):
    from sim.datasets import CollectJob, collect_episodes, default_policy_dir

    record_demos = _launch("record_demos")
    assert record_demos.main(["--source", "expert", "--out", str(tmp_path / "demos"),
                              "--episodes", "1", "--seed", "7"]) == 0  # fmt: skip
    job = CollectJob("walker-walk", "expert", str(tmp_path / "collected"), 7, (0,),
                     str(default_policy_dir("walker-walk")), drop_actions=True)  # fmt: skip
    collect_episodes(job)
    (demo,) = (load_episode(p) for p in episode_paths(tmp_path / "demos"))
    (reference,) = (load_episode(p) for p in episode_paths(tmp_path / "collected"))
    assert demo.actions is None
    np.testing.assert_array_equal(demo.states, reference.states)
    np.testing.assert_array_equal(demo.rewards, reference.rewards)
    np.testing.assert_array_equal(demo.physics, reference.physics)
    assert demo.meta["seed"] == reference.meta["seed"]
    assert demo.meta["reason"] == "end" and demo.meta["truncated"] is True
    assert demo.meta["return"] == pytest.approx(reference.meta["return"])


def test_cli_rejects_bad_arguments(capsys):
    record_demos = _launch("record_demos")
    with pytest.raises(SystemExit):
        record_demos.parse_args(["--source", "expert", "--out", "x", "--bind", "tcp://a:1"])
    assert "--source zmq only" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        record_demos.parse_args(["--source", "zmq", "--out", "x", "--timeout-s", "0"])
    args = record_demos.parse_args(["--source", "zmq", "--out", "x"])
    assert args.episodes == 0


def test_a_non_loopback_bind_needs_insecure():
    with pytest.raises(ValueError, match="insecure"):
        StateReceiver("tcp://0.0.0.0:5570", DIM)


@pytest.mark.timeout(30)
def test_a_sender_written_from_the_protocol_doc_alone(tmp_path):
    """The example of docs/protocol.md section 11: plain pyzmq + json + numpy."""
    import json

    import zmq

    recorder = EpisodeRecorder(tmp_path, RecorderConfig(flush_interval_s=0.05, poll_s=0.005))
    recording = StreamRecording(recorder)
    with StateReceiver("tcp://127.0.0.1:*", DIM) as receiver:
        sock = zmq.Context.instance().socket(zmq.PUSH)
        sock.linger = 0
        sock.connect(receiver.endpoint)
        for step in range(3):
            state = np.full(24, step, dtype="<f4")
            header = {"v": 1, "type": "state", "episode": "take-7", "step": step,
                      "reward": 0.5, "arrays": [{"name": "state", "dtype": "float32",
                                                 "shape": [24]}]}  # fmt: skip
            sock.send_multipart([json.dumps(header).encode(), state.tobytes()])
        end = {"v": 1, "type": "end", "episode": "take-7", "truncated": True}
        sock.send_multipart([json.dumps(end).encode()])
        record_stream(receiver, recording, episodes=1, timeout_s=5, poll_ms=20)
        sock.close()
    recorder.close()
    (episode,) = (load_episode(p) for p in episode_paths(tmp_path))
    assert (len(episode), episode.meta["reason"], episode.meta["truncated"]) == (3, "end", True)
    np.testing.assert_array_equal(episode.states[:, 5], [0, 1, 2])
    np.testing.assert_allclose(episode.rewards, 0.5)


def test_states_queued_when_the_publisher_closes_are_still_delivered():
    # a demonstrator sends its last states and exits at once while they are still queued on
    # its side (here: the recorder is not up yet; on a loaded machine: ZeroMQ's I/O thread
    # lags): closing must deliver them, not drop the episode's tail
    endpoint = f"tcp://127.0.0.1:{free_loopback_port()}"
    steps = 500
    publisher = StatePublisher(endpoint)
    for t in range(steps):
        assert publisher.send_state(0, t, _state(0, t), timeout_ms=1000)
    closer = threading.Thread(target=publisher.close)
    closer.start()
    time.sleep(0.3)
    with StateReceiver(endpoint, DIM) as receiver:
        received = []
        while len(received) < steps:
            event = receiver.receive(2000)
            if event is None:
                break
            received.append(event.step)
    closer.join(10)
    assert received == list(range(steps))
