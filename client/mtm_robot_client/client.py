"""The client of the inference node: numpy and pyzmq only (no torch, no model).

Two ways to use it::

    client = NodeClient("tcp://127.0.0.1:5555", timeout_ms=50)
    reply = client.act("return_conditioned", state, return_target=900.0,   # blocking
                       return_target_units="episode_return")
    action = reply.action

    rid = client.submit("behavior_cloning", state, deadline_ms=20)         # controller tick
    ...
    reply = client.poll(rid)        # None until it arrives; never someone else's reply

The blocking calls (``act``, ``metadata``, ``health``, ``stats``, ``reload``) raise the error
reply's exception (:mod:`mtm_robot_client.errors`: ``BadShape``, ``OutOfRange``, ``Expired``,
...) or :class:`NodeTimeoutError`; ``submit``/``poll`` never raise for a reply: a control loop
reads ``reply.ok``, ``reply.status`` and ``reply.error_code`` and falls back.

Every request carries a fresh id; a reply whose id is not outstanding (a late answer to a
request the caller gave up on) is dropped and counted in ``late_replies``. After a timeout
the blocking calls close the socket (``LINGER=0``) and open a new one, so nothing queued for
a dead or restarted node is ever delivered later.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq

from mtm_robot_client import protocol as wire
from mtm_robot_client.curve import CurveClient
from mtm_robot_client.errors import NodeTimeoutError, ProtocolError, error_for

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 64 << 20


@dataclass
class Reply:
    """A decoded reply. ``arrays`` hold ``action``, ``action_chunk``, ``next_states`` for act."""

    header: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    received: float = 0.0  # time.monotonic() when it arrived

    @property
    def request_id(self) -> int | str | None:
        return self.header.get("id")

    @property
    def status(self) -> str:
        return str(self.header.get("status", ""))

    @property
    def ok(self) -> bool:
        return self.status == wire.STATUS_OK

    @property
    def model_id(self) -> str:
        return str(self.header.get("model_id", ""))

    @property
    def body(self) -> dict[str, Any]:
        return dict(self.header.get("body") or {})

    @property
    def error_code(self) -> str:
        return str((self.header.get("error") or {}).get("code", ""))

    @property
    def error_message(self) -> str:
        return str((self.header.get("error") or {}).get("message", ""))

    @property
    def timings_us(self) -> dict[str, float]:
        return dict(self.header.get("timings_us") or {})

    @property
    def action(self) -> np.ndarray:
        return self.arrays["action"]

    @property
    def action_chunk(self) -> np.ndarray:
        return self.arrays["action_chunk"]

    @property
    def next_states(self) -> np.ndarray:
        return self.arrays["next_states"]

    def raise_for_status(self) -> Reply:
        """``self`` if ok, else raise the exception of its error code (``errors.NodeError``
        subclasses: ``BadShape``, ``OutOfRange``, ``Expired``, ...)."""
        if not self.ok:
            raise error_for(self.error_code or self.status, self.error_message, self)
        return self


def act_request(
    mode: str,
    state: np.ndarray,
    *,
    history_states: np.ndarray | None = None,
    history_actions: np.ndarray | None = None,
    return_target: float | None = None,
    return_target_units: str | None = None,
    future_states: np.ndarray | None = None,
    goal_state: np.ndarray | None = None,
    planned_actions: np.ndarray | None = None,
    deadline_ms: float | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(header fields, arrays) of an ``act`` request; physical units, float32 on the wire."""
    header: dict[str, Any] = {"type": "act", "mode": mode}
    if return_target is not None:
        header["return_target"] = float(return_target)
    if return_target_units is not None:  # "model" (default), "normalized", "episode_return"
        header["return_target_units"] = return_target_units
    if deadline_ms is not None:
        header["deadline_ms"] = float(deadline_ms)
    named = {
        "state": state,
        "history_states": history_states,
        "history_actions": history_actions,
        "future_states": future_states,
        "goal_state": goal_state,
        "planned_actions": planned_actions,
    }
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in named.items() if v is not None}
    return header, arrays


class NodeClient:
    """A DEALER client of one node (or of a broker in front of several)."""

    def __init__(
        self,
        endpoint: str = "tcp://127.0.0.1:5555",
        timeout_ms: float = 1000.0,
        curve: CurveClient | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.timeout_ms = timeout_ms
        self.curve = curve
        self._own_context = context is None
        self.context = context or zmq.Context()
        self._ids = itertools.count(1)
        self._pending: set[int] = set()
        self._ready: dict[int, Reply] = {}
        self.late_replies = 0  # replies to requests no longer outstanding (dropped)
        self.bad_replies = 0  # replies that failed to decode (dropped)
        self.reconnects = 0
        self._poller = zmq.Poller()  # one for the socket's lifetime, not one per wait
        self._socket = self._connect()

    # -- connection -----------------------------------------------------------------------------
    def _connect(self) -> zmq.Socket:
        socket = self.context.socket(zmq.DEALER)
        socket.linger = 0
        socket.rcvhwm = 0
        socket.sndhwm = 0
        # queue only on live connections: while the node is down a send fails at once instead
        # of piling up stale requests that a restarted node would then run
        socket.setsockopt(zmq.IMMEDIATE, 1)
        socket.setsockopt(zmq.RECONNECT_IVL, 50)
        socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        if self.curve is not None:
            self.curve.apply(socket)
        socket.connect(self.endpoint)
        self._poller = zmq.Poller()
        self._poller.register(socket, zmq.POLLIN)
        return socket

    def reconnect(self) -> None:
        """Drop the socket (and everything outstanding on it) and open a new one."""
        self._socket.close(linger=0)
        self._pending.clear()
        self._ready.clear()
        self.reconnects += 1
        self._socket = self._connect()

    def close(self) -> None:
        self._socket.close(linger=0)
        if self._own_context:
            self.context.term()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- submit / poll ----------------------------------------------------------------------------
    def connected(self, wait_ms: float = 0.0) -> bool:
        """Whether a request can be sent now (a live connection), waiting up to ``wait_ms``."""
        return bool(self._socket.poll(int(wait_ms + 0.999), zmq.POLLOUT))

    def wait_connected(self, timeout_s: float = 5.0) -> bool:
        return self.connected(timeout_s * 1e3)

    def send(
        self,
        header: dict[str, Any],
        arrays: dict[str, np.ndarray] | None = None,
        wait_ms: float = 0.0,
    ) -> int:
        """Send any request (``type`` in ``header``); returns its id.

        Requests are only queued on a live connection (``IMMEDIATE``): without one this waits
        up to ``wait_ms`` (default: not at all) and then raises :class:`NodeTimeoutError`.
        """
        rid = next(self._ids)
        frames = [b"", *wire.encode({**header, "id": rid}, arrays)]
        try:  # connected (the usual case): no wait, no poll
            self._socket.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again as exc:
            if wait_ms <= 0 or not self.connected(wait_ms):
                raise NodeTimeoutError(
                    f"no connection to {self.endpoint} within {wait_ms:g} ms: request not sent"
                ) from exc
            try:
                self._socket.send_multipart(frames, zmq.NOBLOCK)
            except zmq.Again as again:
                raise NodeTimeoutError(f"no connection to {self.endpoint}") from again
        self._pending.add(rid)
        return rid

    def submit(self, mode: str, state: np.ndarray, wait_ms: float = 0.0, **fields: Any) -> int:
        """Send an ``act`` request without waiting; see :func:`act_request` for ``fields``."""
        header, arrays = act_request(mode, state, **fields)
        return self.send(header, arrays, wait_ms)

    def poll(self, request_id: int, timeout_ms: float = 0.0) -> Reply | None:
        """The reply to ``request_id`` if it arrives within ``timeout_ms``, else None."""
        if request_id in self._ready:
            self._pending.discard(request_id)
            return self._ready.pop(request_id)
        if request_id not in self._pending:
            raise KeyError(f"request {request_id} is not outstanding")
        if self._receive_available() and request_id in self._ready:  # already here: no wait
            self._pending.discard(request_id)
            return self._ready.pop(request_id)
        deadline = time.monotonic() + timeout_ms / 1e3
        remaining_ms = timeout_ms
        while True:
            if not self._poller.poll(int(remaining_ms + 0.999)):
                return None
            self._receive_available()
            if request_id in self._ready:
                self._pending.discard(request_id)
                return self._ready.pop(request_id)
            remaining_ms = (deadline - time.monotonic()) * 1e3  # another request's reply woke us
            if remaining_ms <= 0:
                return None

    def abandon(self, request_id: int) -> None:
        """Give up on a request: its reply, if it comes, is dropped."""
        self._pending.discard(request_id)
        self._ready.pop(request_id, None)

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    def _receive_available(self) -> bool:
        """Take every reply already received; whether there was any."""
        socket, received = self._socket, False
        while int(socket.get(zmq.EVENTS)) & zmq.POLLIN:  # no zmq.Again per empty read
            frames = socket.recv_multipart(zmq.NOBLOCK)
            received = True
            try:
                message = wire.decode_frames(frames, MAX_REPLY_BYTES)
            except ProtocolError as exc:
                self.bad_replies += 1
                log.warning("undecodable reply dropped: %s", exc)
                continue
            rid = message.request_id
            if isinstance(rid, int) and rid in self._pending and rid not in self._ready:
                self._ready[rid] = Reply(message.header, message.arrays, time.monotonic())
            else:
                self.late_replies += 1
        return received

    # -- blocking calls ---------------------------------------------------------------------------
    def call(
        self,
        header: dict[str, Any],
        arrays: dict[str, np.ndarray] | None = None,
        timeout_ms: float | None = None,
    ) -> Reply:
        """Send and wait up to ``timeout_ms`` in all (connecting included).

        On timeout: reconnect (so a late reply can never arrive), then raise
        :class:`NodeTimeoutError`.
        """
        timeout = self.timeout_ms if timeout_ms is None else timeout_ms
        start = time.monotonic()
        rid = self.send(header, arrays, wait_ms=timeout)  # waits for a connection if needed
        reply = self.poll(rid, max(0.0, timeout - (time.monotonic() - start) * 1e3))
        if reply is None:
            self.reconnect()
            raise NodeTimeoutError(f"no reply from {self.endpoint} within {timeout:g} ms")
        return reply

    def act(
        self, mode: str, state: np.ndarray, timeout_ms: float | None = None, **fields: Any
    ) -> Reply:
        """Blocking ``act``: the ok reply; an error reply raises its code's ``NodeError``
        subclass (``BadShape``, ``OutOfRange``, ``Expired``, ...), no reply in time
        :class:`NodeTimeoutError`. ``fields`` as in :func:`act_request`."""
        header, arrays = act_request(mode, state, **fields)
        return self.call(header, arrays, timeout_ms).raise_for_status()

    def metadata(self, timeout_ms: float | None = None) -> dict[str, Any]:
        return self.call({"type": "metadata"}, timeout_ms=timeout_ms).raise_for_status().body

    def health(self, timeout_ms: float | None = None) -> dict[str, Any]:
        return self.call({"type": "health"}, timeout_ms=timeout_ms).raise_for_status().body

    def stats(self, timeout_ms: float | None = None) -> dict[str, Any]:
        return self.call({"type": "stats"}, timeout_ms=timeout_ms).raise_for_status().body

    def reload(
        self, checkpoint: str | None = None, timeout_ms: float = 120_000, force: bool = False
    ) -> Reply:
        """Hot-swap ``checkpoint`` into the node (it must allow remote reload from there);
        ``force`` serves a different model of the same dimensions (docs/protocol.md)."""
        header: dict[str, Any] = {"type": "reload"}
        if checkpoint is not None:
            header["checkpoint"] = checkpoint
        if force:
            header["force"] = True
        return self.call(header, timeout_ms=timeout_ms).raise_for_status()

    def wait_ready(self, timeout_s: float = 30.0, poll_ms: float = 200.0) -> dict[str, Any]:
        """Poll ``health`` until the node is ready (warm); raises NodeTimeoutError otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                health = self.health(timeout_ms=poll_ms)
                if health.get("ready"):
                    return health
            except NodeTimeoutError:
                pass
            if time.monotonic() > deadline:
                raise NodeTimeoutError(f"{self.endpoint} not ready within {timeout_s:g} s")
            time.sleep(min(poll_ms / 1e3, 0.05))
