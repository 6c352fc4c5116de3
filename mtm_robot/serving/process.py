"""Running an inference node as a child process (what ``sim_control.py`` does by default).

Imports no torch: the child process loads the model, the parent only talks ZeroMQ to it.

Lifecycle: a node started here is passed ``--parent-pid`` and exits when its parent dies
(:func:`exit_with_parent`: ``PR_SET_PDEATHSIG`` on Linux, plus a ``getppid`` watchdog), so a
``kill -9`` of the controller leaves no orphan serving on.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtm_robot.errors import MTMRobotError
from mtm_robot.serving.client import NodeClient, NodeTimeoutError

log = logging.getLogger(__name__)
SERVE_SCRIPT = Path(__file__).resolve().parents[2] / "launch" / "serve.py"


#: prctl(2) option: the signal this process gets when its parent (thread) ends.
PR_SET_PDEATHSIG = 1


def _set_parent_death_signal(signum: int) -> bool:
    """Linux: have the kernel send ``signum`` when the parent ends; False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
            return False
    except (OSError, AttributeError) as exc:
        log.warning("prctl unavailable (%s): relying on the parent watchdog", exc)
        return False
    return True


def exit_with_parent(
    parent_pid: int,
    on_parent_death: Callable[[], None],
    poll_s: float = 0.5,
    grace_s: float = 10.0,
) -> threading.Thread:
    """End this process when ``parent_pid`` (the process that started it) ends.

    On Linux the kernel sends SIGTERM at once (``PR_SET_PDEATHSIG``; the caller's SIGTERM
    handler stops gracefully). A daemon thread also polls ``os.getppid()`` every ``poll_s``
    (portable, and it covers a parent that died before the prctl): when the parent is gone it
    calls ``on_parent_death`` and, if the process still runs ``grace_s`` later, exits hard.
    """
    _set_parent_death_signal(signal.SIGTERM)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        log.warning("parent process %d is gone: stopping", parent_pid)
        on_parent_death()
        time.sleep(grace_s)
        log.error("still running %.0f s after the parent died: exiting now", grace_s)
        os._exit(1)

    thread = threading.Thread(target=watch, name="mtm-parent-watch", daemon=True)
    thread.start()
    return thread


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NodeProcess:
    """``python launch/serve.py`` in a child process on a free loopback port."""

    def __init__(
        self,
        checkpoint: str,
        log_path: Path,
        extra_args: list[str] | None = None,
        port: int | None = None,
        rt_priority: int = 0,
    ) -> None:
        self.checkpoint = checkpoint
        self.port = port or free_loopback_port()
        self.endpoint = f"tcp://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.extra_args = list(extra_args or [])
        self.process: subprocess.Popen[bytes] | None = None
        self.rt_priority = rt_priority  # SCHED_FIFO priority of the node (0: normal)

    def start(self, ready_timeout_s: float = 120.0) -> dict[str, object]:
        """Start the node and wait until it is warm; returns its metadata.

        The node exits when this process ends (``--parent-pid``). On Linux it also gets
        SIGTERM when the *thread* that started it ends: start it from a thread that lives as
        long as the node should.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            str(SERVE_SCRIPT),
            "--checkpoint",
            self.checkpoint,
            "--bind",
            self.endpoint,
            "--parent-pid",
            str(os.getpid()),
            *self.extra_args,
        ]
        handle = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
        if self.rt_priority > 0:
            try:
                os.sched_setscheduler(
                    self.process.pid, os.SCHED_FIFO, os.sched_param(self.rt_priority)
                )
            except OSError as exc:
                log.warning("could not give the node realtime priority: %s", exc)
        handle.close()
        deadline = time.monotonic() + ready_timeout_s
        with NodeClient(self.endpoint, timeout_ms=500) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise MTMRobotError(
                        f"the inference node exited with code {self.process.returncode} before "
                        f"it was ready; its log ({self.log_path}) ends with:\n{self.log_tail()}"
                    )
                try:
                    if client.health(timeout_ms=500).get("ready"):
                        return client.metadata(timeout_ms=2000)
                except NodeTimeoutError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise MTMRobotError(
            f"the inference node was not ready within {ready_timeout_s:.0f} s; "
            f"log tail:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: a crash, for fault tests."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (graceful), then SIGKILL if it does not stop in time."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("node did not stop within %.0f s: killing it", timeout_s)
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def open_node(
    server: str,
    checkpoint: str,
    log_path: Path,
    node_args: list[str] | None = None,
    ready_timeout_s: float = 120.0,
    rt_priority: int = 0,
) -> tuple[str, dict[str, Any], NodeProcess | None]:
    """Use the node at ``server`` if given, else start one serving ``checkpoint``.

    Returns (endpoint, the node's metadata, the started process or None); the caller stops a
    started process. An unreachable ``server`` is a clear error.
    """
    if server:
        with NodeClient(server, timeout_ms=2000) as probe:
            try:
                return server, probe.metadata(timeout_ms=2000), None
            except NodeTimeoutError as exc:
                raise MTMRobotError(f"no inference node answers at {server}") from exc
    node = NodeProcess(checkpoint, log_path, node_args, rt_priority=rt_priority)
    metadata = node.start(ready_timeout_s)
    return node.endpoint, metadata, node
