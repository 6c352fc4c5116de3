"""A node started as a child exits when its parent dies (issue 12, defect 6)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PARENT = """
import sys, time
from pathlib import Path
from mtm_robot.serving.process import NodeProcess
node = NodeProcess(sys.argv[1], Path(sys.argv[2]))
node.start(ready_timeout_s=120)
print(node.process.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return not alive(pid)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_kill_9_of_the_parent_ends_the_node_it_started(checkpoint_a, tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(checkpoint_a), str(tmp_path / "node.log")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    node_pid = 0
    try:
        assert parent.stdout is not None
        ready, _, _ = select.select([parent.stdout], [], [], 150)
        assert ready, "the parent did not start its node"
        node_pid = int(parent.stdout.readline())
        assert alive(node_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert wait_gone(node_pid, 5.0), "the node outlived its parent (orphan)"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if node_pid and alive(node_pid):
            os.kill(node_pid, signal.SIGKILL)


WATCHED = """
import os, time
from mtm_robot.serving.process import exit_with_parent
# a "parent" that is not ours: as if ours had died and this process had been re-parented
exit_with_parent(os.getppid() + 1_000_000, lambda: print("stopping", flush=True), 0.01, 0.2)
time.sleep(30)
"""


@pytest.mark.timeout(60)
def test_the_watchdog_stops_then_exits_when_the_parent_is_gone():
    result = subprocess.run(
        [sys.executable, "-c", WATCHED], capture_output=True, text=True, timeout=25, cwd=ROOT
    )
    assert result.stdout.strip() == "stopping"  # the graceful stop was asked first
    assert result.returncode == 1  # then, still running after the grace period, a hard exit
