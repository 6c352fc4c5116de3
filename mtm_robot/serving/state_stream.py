"""The state stream: observations published by a robot stack, recorded as action-free demos.

A demonstrator (a robot stack, motion capture, a simulator) PUSHes one message per control step;
``python launch/record_demos.py --source zmq`` PULLs them and records each episode through the
recorder, with no ``actions`` array. PUSH/PULL rather than PUB/SUB: a PUSH socket never drops a
message (it waits at its high-water mark), and there is no slow-joiner loss at the start.

Messages use the node's codec (:mod:`mtm_robot_client.protocol`): frame 0 a UTF-8 JSON header,
then one raw little-endian frame per array; no envelope and no empty delimiter (PUSH/PULL carry
no routing frames). Two types (full contract in ``docs/protocol.md``, section 11):

* ``state``: ``episode`` (id), ``step`` (0, 1, 2, ... within the episode), optional ``reward``
  and ``t_s``; array ``state`` ``[ds]``.
* ``end``: ``episode``, optional ``terminated``, ``truncated``, ``reason``.

:class:`StreamRecording` turns these events into episodes. It never raises on a bad message:
a wrong dimension, NaN, a malformed message, a gap in ``step``, a new episode id while one is
open, or silence longer than the timeout (a dropped connection) closes the open episode with
the reason in its metadata. Later messages of a closed episode are discarded and counted.
Nothing already recorded is lost: the recorder flushes crash-safe chunks.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import zmq

from mtm_robot.errors import ConfigError
from mtm_robot.serving.security import bind_endpoint, is_loopback
from mtm_robot_client import protocol
from mtm_robot_client.errors import ProtocolError

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5570"
STATE, END = "state", "end"
#: ``reason`` values a recorded stream episode can end with (metadata ``reason``).
REASONS = (
    "end",  # the sender's end message
    "timeout",  # no message for timeout_s: sender gone, connection dropped
    protocol.BAD_SHAPE,  # state of the wrong dimension
    protocol.NOT_FINITE,  # NaN or infinity in the state or reward
    protocol.BAD_MESSAGE,  # not a valid stream message
    "step_gap",  # ``step`` did not follow the previous one
    "new_episode",  # a state of another episode arrived before this one's end message
    "interrupted",  # the recorder was stopped (SIGINT/SIGTERM, --episodes reached)
)


@dataclass(frozen=True)
class StateStep:
    """One step of a demonstration (physical units)."""

    episode: str
    step: int
    state: np.ndarray  # (ds,)
    reward: float | None = None
    t_s: float | None = None  # sender's timestamp
    physics: np.ndarray | None = None  # simulator state (in-process sources only)


@dataclass(frozen=True)
class StreamEnd:
    episode: str
    terminated: bool = False
    truncated: bool = False
    reason: str = ""


@dataclass(frozen=True)
class StreamFault:
    """A message that could not be accepted; ``code`` is a protocol error code."""

    code: str
    message: str
    episode: str | None  # the episode it claims to belong to, when readable


Event = StateStep | StreamEnd | StreamFault


# -- codec --------------------------------------------------------------------------------------
def encode_state(
    episode: str | int,
    step: int,
    state: np.ndarray,
    reward: float | None = None,
    t_s: float | None = None,
) -> list[bytes]:
    """The frames of one ``state`` message."""
    header: dict[str, Any] = {"type": STATE, "episode": str(episode), "step": int(step)}
    if reward is not None:
        header["reward"] = float(reward)
    if t_s is not None:
        header["t_s"] = float(t_s)
    return protocol.encode(header, {"state": np.asarray(state)})


def encode_end(
    episode: str | int, terminated: bool = False, truncated: bool = False, reason: str = ""
) -> list[bytes]:
    """The frames of one ``end`` message."""
    header = {"type": END, "episode": str(episode), "terminated": bool(terminated),
              "truncated": bool(truncated), "reason": str(reason)[:200]}  # fmt: skip
    return protocol.encode(header)


def _episode_id(header: Mapping[str, Any]) -> str | None:
    value = header.get("episode")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text if 0 < len(text) <= protocol.MAX_ID_CHARS else None


def _readable_episode(frames: list[bytes]) -> str | None:
    """The episode id of a message that failed to decode, when its header is readable JSON."""
    if not frames or len(frames[0]) > protocol.MAX_HEADER_BYTES:
        return None
    try:
        header = json.loads(bytes(frames[0]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return _episode_id(header) if isinstance(header, dict) else None


def parse(frames: list[bytes], state_dim: int, max_message_bytes: int = 1 << 20) -> Event:
    """Frames of one message -> an event; every problem is a :class:`StreamFault`."""
    try:
        message = protocol.decode(frames, max_message_bytes, check_finite=False, require_id=False)
    except ProtocolError as exc:
        return StreamFault(exc.code, exc.message, _readable_episode(frames))
    header = message.header
    episode = _episode_id(header)
    if episode is None:
        return StreamFault(protocol.BAD_MESSAGE, "header.episode: expected a short id", None)
    if message.type == END:
        return StreamEnd(
            episode,
            bool(header.get("terminated", False)),
            bool(header.get("truncated", False)),
            str(header.get("reason", ""))[:200],
        )
    if message.type != STATE:
        return StreamFault(
            protocol.UNKNOWN_TYPE, f"type {message.type!r:.40}: expected 'state' or 'end'", episode
        )
    step = header.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return StreamFault(protocol.BAD_MESSAGE, "header.step: expected an int >= 0", episode)
    reward, t_s = header.get("reward"), header.get("t_s")
    for name, value in (("reward", reward), ("t_s", t_s)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return StreamFault(protocol.BAD_MESSAGE, f"header.{name}: expected a number", episode)
    if set(message.arrays) != {"state"}:
        return StreamFault(
            protocol.BAD_MESSAGE,
            f"arrays: expected exactly 'state', got {sorted(message.arrays)}",
            episode,
        )
    state = message.arrays["state"]
    if state.shape not in ((state_dim,), (1, state_dim)):
        shape = list(state.shape)
        return StreamFault(
            protocol.BAD_SHAPE, f"state: expected [{state_dim}], got {shape}", episode
        )
    state = state.reshape(state_dim)
    if not np.isfinite(state).all() or (reward is not None and not math.isfinite(reward)):
        return StreamFault(protocol.NOT_FINITE, "state or reward contains NaN or infinity", episode)
    return StateStep(
        episode,
        step,
        state.astype(np.float32),
        None if reward is None else float(reward),
        None if t_s is None else float(t_s),
    )


# -- sockets ------------------------------------------------------------------------------------
def _socket(context: zmq.Context, kind: int, endpoint: str, bind: bool) -> zmq.Socket:
    socket = context.socket(kind)
    socket.linger = 0
    socket.setsockopt(zmq.RECONNECT_IVL, 50)
    socket.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
    if bind:
        bind_endpoint(socket, endpoint)
    else:
        socket.connect(endpoint)
    return socket


class StateReceiver:
    """The recording side: a PULL socket (bound by default) yielding :data:`Event` objects."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        state_dim: int = 0,
        bind: bool = True,
        max_message_bytes: int = 1 << 20,
        context: zmq.Context | None = None,
        insecure: bool = False,
    ) -> None:
        """``insecure`` allows binding a non-loopback address (the stream has no CurveZMQ)."""
        if state_dim <= 0:
            raise ValueError(f"state_dim must be positive, got {state_dim}")
        if bind and not is_loopback(endpoint) and not insecure:
            raise ConfigError(
                f"binding {endpoint} would let anyone on the network write demonstrations; "
                "the state stream has no CurveZMQ: bind loopback (or tunnel), or pass insecure"
            )
        self.state_dim = state_dim
        self.max_message_bytes = max_message_bytes
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.socket = _socket(self.context, zmq.PULL, endpoint, bind)
        # a frame far over the cap drops the connection instead of being buffered
        self.socket.setsockopt(zmq.MAXMSGSIZE, 2 * max_message_bytes + protocol.MAX_HEADER_BYTES)
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT) or endpoint

    def receive(self, timeout_ms: float) -> Event | None:
        """The next event, or None when nothing arrived within ``timeout_ms``."""
        if not self.socket.poll(max(0, int(timeout_ms)), zmq.POLLIN):
            return None
        return parse(self.socket.recv_multipart(), self.state_dim, self.max_message_bytes)

    def close(self) -> None:
        self.socket.close(linger=0)
        if self._own_context:
            self.context.term()

    def __enter__(self) -> StateReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StatePublisher:
    """The demonstrator side in Python: a PUSH socket (connects by default)."""

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        bind: bool = False,
        context: zmq.Context | None = None,
    ) -> None:
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.socket = _socket(self.context, zmq.PUSH, endpoint, bind)

    def send_frames(self, frames: list[bytes], timeout_ms: float = 1000.0) -> bool:
        """Send raw frames; False if the recorder could not take them within ``timeout_ms``."""
        if not self.socket.poll(max(0, int(timeout_ms)), zmq.POLLOUT):
            return False
        self.socket.send_multipart(frames)
        return True

    def send_state(
        self,
        episode: str | int,
        step: int,
        state: np.ndarray,
        reward: float | None = None,
        t_s: float | None = None,
        timeout_ms: float = 1000.0,
    ) -> bool:
        return self.send_frames(encode_state(episode, step, state, reward, t_s), timeout_ms)

    def send_end(
        self,
        episode: str | int,
        terminated: bool = False,
        truncated: bool = False,
        reason: str = "",
        timeout_ms: float = 1000.0,
    ) -> bool:
        return self.send_frames(encode_end(episode, terminated, truncated, reason), timeout_ms)

    def close(self, linger_ms: int = 5000) -> None:
        """Close; states still queued are delivered for up to ``linger_ms`` first (closing with
        no linger dropped the tail of the last episode whenever the recorder lagged)."""
        self.socket.close(linger=linger_ms)
        if self._own_context:
            self.context.term()

    def __enter__(self) -> StatePublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- recording ----------------------------------------------------------------------------------
class EpisodeSink(Protocol):
    """What the recording needs of a recorder (:class:`controllers.recorder.EpisodeRecorder`)."""

    def begin(self, meta: dict[str, Any]) -> Any: ...
    def record(
        self,
        state: np.ndarray,
        action: np.ndarray | None,
        reward: float,
        physics: np.ndarray | None,
        t_s: float,
        **telemetry: Any,
    ) -> bool: ...
    def end(self, **meta: Any) -> None: ...


@dataclass
class EpisodeSummary:
    episode: str  # the stream's episode id
    steps: int
    reason: str
    detail: str = ""
    return_: float | None = None  # sum of rewards when every step carried one
    path: str = ""


class StreamRecording:
    """Applies events to a sink: one recorded episode per stream episode, closed on any fault.

    ``meta`` goes into every episode's metadata (task, source, control_hz, ...). Steps without a
    reward are recorded with a NaN reward and the episode is marked ``rewards_known: false``
    (``launch/record_demos.py`` then rewrites it without a ``rewards`` array).
    """

    def __init__(
        self,
        sink: EpisodeSink,
        meta: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sink = sink
        self.meta = dict(meta or {})
        self.clock = clock
        self.summaries: list[EpisodeSummary] = []
        self.discarded = 0  # messages of closed episodes or with no readable episode
        self._open: str | None = None  # the stream id of the episode being recorded
        self._path = ""
        self._steps = 0
        self._next_step = 0
        self._rewards: list[float | None] = []
        self._closed: set[str] = set()
        self._started_s = 0.0

    @property
    def open_episode(self) -> str | None:
        return self._open

    def apply(self, event: Event) -> None:
        if isinstance(event, StreamFault):
            if event.episode is not None and event.episode == self._open:
                self.close(event.code, event.message)
            else:
                self.discarded += 1
                log.warning("discarded a stream message: %s (%s)", event.message, event.code)
            return
        if event.episode in self._closed:
            self.discarded += 1
            return
        if isinstance(event, StreamEnd):
            if event.episode == self._open:
                detail = event.reason
                self.close("end", detail, terminated=event.terminated, truncated=event.truncated)
            else:
                self.discarded += 1
            return
        if self._open is not None and event.episode != self._open:
            self.close("new_episode", f"a state of episode {event.episode!r} arrived")
        if self._open is None:
            if event.step != 0:
                self.discarded += 1  # joined mid-episode: wait for the next one
                self._closed.add(event.episode)
                log.warning("episode %r joined at step %d: skipped", event.episode, event.step)
                return
            self._begin(event.episode)
        elif event.step != self._next_step:
            self.close("step_gap", f"expected step {self._next_step}, got {event.step}")
            return
        reward = float("nan") if event.reward is None else event.reward
        t_s = event.t_s if event.t_s is not None else self.clock() - self._started_s
        self.sink.record(
            event.state,
            None,
            reward,
            event.physics,
            t_s,
            stream_step=event.step,
            receive_s=self.clock() - self._started_s,
        )
        self._rewards.append(event.reward)
        self._steps += 1
        self._next_step = event.step + 1

    def _begin(self, episode: str) -> None:
        self._open, self._steps, self._next_step, self._rewards = episode, 0, 0, []
        self._started_s = self.clock()
        path = self.sink.begin(dict(self.meta, stream_episode=episode))
        self._path = str(path) if path is not None else ""

    def timeout(self, silent_s: float) -> None:
        if self._open is not None:
            self.close("timeout", f"no message for {silent_s:.2f} s")

    def close(self, reason: str, detail: str = "", **extra: Any) -> None:
        """Close the open episode (if any) with ``reason``; its metadata records why."""
        if self._open is None:
            return
        known = [r for r in self._rewards if r is not None]
        rewards_known = len(known) == len(self._rewards)
        if rewards_known:
            extra["return"] = float(sum(known))
        self.sink.end(
            reason=reason,
            reason_detail=detail,
            ended_cleanly=reason == "end",
            steps=self._steps,
            rewards_known=rewards_known,
            **extra,
        )
        if reason != "end":
            log.warning("episode %r closed after %d steps: %s %s", self._open, self._steps,
                        reason, detail)  # fmt: skip
        self.summaries.append(
            EpisodeSummary(
                self._open,
                self._steps,
                reason,
                detail,
                float(sum(known)) if rewards_known and known else None,
                self._path,
            )
        )
        self._closed.add(self._open)
        self._open = None


def record_stream(
    receiver: StateReceiver,
    recording: StreamRecording,
    episodes: int = 0,
    timeout_s: float = 1.0,
    idle_timeout_s: float = 0.0,
    should_stop: Callable[[], bool] | None = None,
    poll_ms: float = 100.0,
) -> list[EpisodeSummary]:
    """Receive and record until ``episodes`` episodes are closed (0: no limit), nothing arrives
    for ``idle_timeout_s`` while no episode is open (0: wait forever), or ``should_stop()``.

    An open episode silent for ``timeout_s`` is closed with reason ``timeout``. On return the
    open episode, if any, is closed with reason ``interrupted``.
    """
    last_s = time.monotonic()
    try:
        while not (episodes and len(recording.summaries) >= episodes):
            if should_stop is not None and should_stop():
                break
            event = receiver.receive(poll_ms)
            now = time.monotonic()
            if event is not None:
                last_s = now
                recording.apply(event)
                continue
            silent_s = now - last_s
            if recording.open_episode is not None and silent_s >= timeout_s:
                recording.timeout(silent_s)
                last_s = now
            elif recording.open_episode is None and idle_timeout_s and silent_s >= idle_timeout_s:
                break
    finally:
        recording.close("interrupted", "recorder stopped")
    return recording.summaries
