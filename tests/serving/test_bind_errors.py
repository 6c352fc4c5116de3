"""A bind ZeroMQ refuses (port in use, no such address) is one clear error, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from mtm_robot.errors import ConfigError
from mtm_robot.serving.security import bind_endpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def taken() -> object:
    """An endpoint another socket already holds."""
    context = zmq.Context()
    holder = context.socket(zmq.PULL)
    holder.linger = 0
    endpoint = bind_endpoint(holder, "tcp://127.0.0.1:0")
    yield endpoint
    holder.close()
    context.term()


def test_bind_returns_the_port_it_got_and_names_a_taken_one(taken):
    context = zmq.Context()
    socket = context.socket(zmq.PULL)
    socket.linger = 0
    try:
        with pytest.raises(ConfigError, match=r"--bind 'tcp://127\.0\.0\.1:\d+'.*another process"):
            bind_endpoint(socket, str(taken))
        with pytest.raises(ConfigError, match="no such address"):
            bind_endpoint(socket, "tcp://192.0.2.1:5555")  # TEST-NET-1: never this machine's
        assert bind_endpoint(socket, "tcp://127.0.0.1:0").startswith("tcp://127.0.0.1:")
    finally:
        socket.close()
        context.term()


@pytest.mark.slow
@pytest.mark.parametrize(
    "argv",
    [
        ["serve.py", "--checkpoint", "default", "--bind"],
        ["record_demos.py", "--source", "zmq", "--out", "{tmp}/demos", "--bind"],
    ],
    ids=["serve", "record_demos"],
)
def test_a_launcher_bound_to_a_taken_port_says_so_in_one_line(argv, taken, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv] + [str(taken)]
    done = subprocess.run(
        [sys.executable, str(ROOT / "launch" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(taken) in last and "another process" in last
