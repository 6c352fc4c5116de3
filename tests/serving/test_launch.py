from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mtm_robot_client import NodeClient

from .conftest import LOOPBACK

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_serve_script_answers_then_stops_gracefully_on_sigterm(checkpoint_a):
    process = subprocess.Popen(
        [
            sys.executable,
            "-u",
            str(ROOT / "launch" / "serve.py"),
            "--checkpoint",
            str(checkpoint_a),
            "--bind",
            LOOPBACK,
            "--max-batch",
            "4",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        line = ""
        while "serving" not in line:
            line = process.stdout.readline()
            assert line, "serve.py exited before serving"
        endpoint = line.split(" on ")[1].split(" ")[0]
        with NodeClient(endpoint, timeout_ms=5000) as client:
            client.wait_ready(30)
            process.send_signal(signal.SIGHUP)  # reload the same checkpoint from disk
            deadline = time.monotonic() + 30
            while client.stats()["counters"]["reloads"] < 1:
                assert time.monotonic() < deadline, "SIGHUP did not reload"
                time.sleep(0.05)
            rids = [client.submit("behavior_cloning", np.zeros(5, np.float32)) for _ in range(20)]
            assert client.stats()["counters"]["requests"] >= 20  # all 20 reached the node
            process.send_signal(signal.SIGTERM)
            replies = [client.poll(rid, 5000) for rid in rids]
        assert all(r is not None and r.ok for r in replies)  # queued work finished first
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert "SIGTERM" in output and "stopped" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_export_script_writes_a_checked_graph(checkpoint_a, tmp_path):
    out = tmp_path / "model.onnx"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "launch" / "export_onnx.py"),
            "--checkpoint",
            str(checkpoint_a),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file() and "max abs difference" in result.stdout


def test_keygen_script_writes_a_pair_and_refuses_to_overwrite(tmp_path):
    command = [
        sys.executable,
        str(ROOT / "launch" / "keygen.py"),
        "--out",
        str(tmp_path),
        "--name",
        "robot",
    ]
    assert subprocess.run(command, capture_output=True, timeout=60).returncode == 0
    assert (tmp_path / "robot.key").is_file()
    assert (tmp_path / "robot.key_secret").stat().st_mode & 0o777 == 0o600
    assert subprocess.run(command, capture_output=True, timeout=60).returncode == 2


def test_broker_script_forwards_to_a_node_and_stops_on_sigterm(start_node):
    node = start_node()
    process = subprocess.Popen(
        [
            sys.executable,
            "-u",
            str(ROOT / "launch" / "broker.py"),
            "--bind",
            LOOPBACK,
            "--node",
            node.endpoint,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        line = ""
        while not line.startswith("broker on "):  # (log lines come first)
            line = process.stdout.readline()
            assert line, "broker.py exited before starting"
        with NodeClient(line.split()[2], timeout_ms=5000) as client:
            assert client.act("behavior_cloning", np.zeros(5, np.float32)).model_id == "tiny-a"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0 and "stopped" in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
