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
from mtm_robot_client import NodeClient, NodeTimeoutError

log = logging.getLogger(__name__)
#: How the node starts: ``python -m mtm_robot.serving`` (the ``mtm-serve`` command), so an
#: installed package starts it as a checkout does.
SERVE_MODULE = "mtm_robot.serving"


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

    Call from the main thread. On Linux the kernel signals at once (``PR_SET_PDEATHSIG`` with
    SIGUSR1). It also does so when only the parent's *thread* that started this process ends,
    so the handler acts only if ``os.getppid()`` shows the parent process gone. A daemon thread
    also polls ``os.getppid()`` every ``poll_s`` (portable, and it covers a parent that died
    before the prctl). Either calls ``on_parent_death`` once; if the process still runs
    ``grace_s`` later, it exits hard.
    """
    fired = threading.Event()

    def parent_gone() -> None:
        if not fired.is_set():
            fired.set()
            on_parent_death()

    def on_signal(signum: int, frame: object) -> None:
        if os.getppid() != parent_pid:  # not just the starting thread: the process is gone
            parent_gone()

    signal.signal(signal.SIGUSR1, on_signal)
    _set_parent_death_signal(signal.SIGUSR1)

    def watch() -> None:
        while os.getppid() == parent_pid and not fired.is_set():
            time.sleep(poll_s)
        log.warning("parent process %d is gone: stopping", parent_pid)
        parent_gone()
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
    """``python -m mtm_robot.serving`` (the node) in a child process on a free loopback port."""

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

        The node exits when this process ends (``--parent-pid``), from any thread it is
        started.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            SERVE_MODULE,
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


def describe_exit(returncode: int) -> str:
    """``-9`` -> ``killed by SIGKILL``; ``1`` -> ``exit code 1``."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class NodeSupervisor:
    """Watches a node this process started: reports its death within ``poll_s`` and restarts
    it on the same endpoint, at most ``max_restarts`` times; after that the node is *lost*.

    What the controller reads (:class:`controllers.loop.NodeWatch`): ``down`` while the node is
    dead or restarting, ``generation`` (+1 per restart: a request sent before is gone),
    ``lost_reason`` (non-empty: the node is gone for good, the run must end). ``events`` is the
    record for the run's summary. Restarts run on this watcher's thread.
    """

    def __init__(
        self,
        node: NodeProcess,
        max_restarts: int = 1,
        ready_timeout_s: float = 120.0,
        poll_s: float = 0.1,
    ) -> None:
        if max_restarts < 0:
            raise MTMRobotError(f"max_restarts must be >= 0, got {max_restarts}")
        self.node = node
        self.max_restarts = max_restarts
        self.ready_timeout_s = ready_timeout_s
        self.poll_s = poll_s
        self.restarts = 0
        self.generation = 0
        self.lost_reason = ""
        self.events: list[dict[str, Any]] = []
        self._down = threading.Event()
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name="mtm-node-watch", daemon=True)

    @property
    def down(self) -> bool:
        return self._down.is_set()

    def start(self) -> NodeSupervisor:
        self._thread.start()
        return self

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop watching (before stopping the node, so that is not taken for a death)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def __enter__(self) -> NodeSupervisor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _event(self, kind: str, detail: str, pid: int | None) -> None:
        self.events.append(
            {
                "event": kind,
                "t_s": round(time.monotonic() - self._started, 3),
                "unix_s": time.time(),
                "pid": pid,
                "detail": detail,
            }
        )

    def _watch(self) -> None:
        while not self._stop.wait(self.poll_s):
            process = self.node.process
            if process is None or (code := process.poll()) is None:
                continue
            self._down.set()
            how = describe_exit(code)
            self._event("died", how, process.pid)
            if self.restarts >= self.max_restarts:
                self.lost_reason = (
                    f"the inference node (pid {process.pid}) died: {how}; no restart left "
                    f"(node_restarts={self.max_restarts}); its log: {self.node.log_path}"
                )
                log.error("%s", self.lost_reason)
                self._event("lost", self.lost_reason, process.pid)
                return
            self.restarts += 1
            log.warning(
                "the inference node (pid %d) died: %s; restarting it (%d of %d); its log: %s",
                process.pid,
                how,
                self.restarts,
                self.max_restarts,
                self.node.log_path,
            )
            started = time.monotonic()
            try:
                self.node.start(self.ready_timeout_s)
            except MTMRobotError as exc:
                self.lost_reason = f"the inference node died ({how}) and its restart failed: {exc}"
                log.error("%s", self.lost_reason)
                self._event("lost", self.lost_reason, None)
                return
            if self._stop.is_set():  # closed while restarting: the session stops the node
                return
            new_pid = self.node.process.pid if self.node.process is not None else None
            took = time.monotonic() - started
            self._event("restarted", f"ready again after {took:.1f} s", new_pid)
            log.warning("the inference node is back (pid %s) after %.1f s", new_pid, took)
            self.generation += 1
            self._down.clear()
