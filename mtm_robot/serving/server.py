"""The inference node: a ZeroMQ ROUTER socket in front of the dynamic batcher.

Threads:

* the **receive loop** (the thread that calls :meth:`InferenceNode.serve_forever`) owns the
  ROUTER socket. It decodes and checks every message, answers ``metadata``, ``health``,
  ``stats`` and every error itself, and enqueues ``act`` requests. Replies produced elsewhere
  reach it over an ``inproc`` PUSH/PULL pair, because a ZeroMQ socket must only be used by
  one thread.
* **a lone request runs inline** (``inline_lone_requests``): when one pass over the socket
  yields a single ``act`` request, nothing is queued and the inference thread is idle, the
  receive loop runs it as a batch of one itself and sends the reply: no hand-off to another
  thread and back, which is what a single robot's controller sees every tick. When a pass
  yields two or more, they all go to the batcher at once, and while any batch runs every new
  request does too, so concurrent clients are still batched together. The price: while an
  inline forward runs (one batch-1 forward), the loop reads nothing.
* the **inference thread** (:class:`~mtm_robot.serving.batcher.Batcher`) warms the engine up
  (``health`` says ready afterwards), then runs batches and encodes their replies.
* a **reload thread**, while a ``reload`` runs: loads and warms the new checkpoint, then swaps
  the engine; jobs already queued are answered by whichever engine runs their batch, and every
  reply names that engine's model id.

The wire format is in :mod:`mtm_robot_client.protocol` and ``docs/protocol.md``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from pathlib import Path
from typing import Any

import zmq

from mtm_robot.errors import ConfigError
from mtm_robot.serving.backends import Engine, load_engine, warm_up
from mtm_robot.serving.batcher import Batcher, Job, Outcome
from mtm_robot.serving.config import ServeConfig
from mtm_robot.serving.contexts import context_from_message, deadline_ms, prediction_arrays
from mtm_robot.serving.reload_policy import (
    allowed_reload_path,
    model_differences,
    spec_differences,
)
from mtm_robot.serving.security import CurveServer, bind_endpoint, is_loopback
from mtm_robot.serving.stats import ServingStats
from mtm_robot.training.checkpoint import read_metadata, resolve_checkpoint_path
from mtm_robot_client import protocol as wire

log = logging.getLogger(__name__)

_node_ids = itertools.count()
#: Request types that take no arrays (a request carrying some is refused, never half-read).
NO_ARRAY_TYPES = ("metadata", "health", "stats", "reload")


class InferenceNode:
    """One inference node. ``start()`` binds; ``serve_forever()`` runs the receive loop."""

    def __init__(
        self,
        config: ServeConfig,
        context: zmq.Context | None = None,
        engine: Engine | None = None,
    ) -> None:
        self.config = config
        self._own_context = context is None
        self.context = context or zmq.Context()
        self._engine = engine or load_engine(config.checkpoint, config.backend, warm=False)
        self._checkpoint_path = str(self._engine.checkpoint.path or config.checkpoint)
        self.stats = ServingStats(config.stats_window)
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._reloading = threading.Event()
        self._pending_reload: tuple[str, bool] | None = None
        self._lock = threading.Lock()
        self._results_address = f"inproc://mtm-results-{id(self)}-{next(_node_ids)}"
        self._router: zmq.Socket | None = None
        self._results: zmq.Socket | None = None
        self._push: zmq.Socket | None = None
        self._auth: Any = None
        self._thread: threading.Thread | None = None
        self.endpoint = ""
        self._batcher = Batcher(
            lambda: self._engine,
            self._deliver,
            self.stats,
            max_batch=config.backend.max_batch,
            max_wait_us=config.max_wait_us,
            max_queue=config.max_queue,
            before_start=self._warm_up,
        )

    # -- public -------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def model_id(self) -> str:
        return self._engine.model_id

    @property
    def queue_depth(self) -> int:
        """Act requests queued and not yet taken into a batch."""
        return self._batcher.depth

    def start(self) -> str:
        """Bind the sockets and start the inference thread; returns the bound endpoint."""
        if not is_loopback(self.config.bind) and not self.config.curve_secret_key:
            log.warning(
                "SERVING WITHOUT ENCRYPTION OR AUTHENTICATION on %s (--insecure): anyone who "
                "can reach this address can query the model",
                self.config.bind,
            )
        router = self.context.socket(zmq.ROUTER)
        router.linger = 500
        router.sndhwm = self.config.send_hwm
        router.rcvhwm = self.config.send_hwm
        router.maxmsgsize = 2 * self.config.max_message_bytes + wire.MAX_HEADER_BYTES
        if self.config.curve_secret_key:
            curve = CurveServer(self.config.curve_secret_key, self.config.curve_allowed_clients)
            self._auth = curve.apply(self.context, router)
        self.endpoint = bind_endpoint(router, self.config.bind)
        self._router = router
        self._results = self.context.socket(zmq.PULL)
        self._results.linger = 0
        self._results.bind(self._results_address)
        self._push = self._connect_push()
        self._batcher.start()
        log.info("inference node on %s serving %s", self.endpoint, self.model_id)
        return self.endpoint

    def serve_forever(self) -> None:
        """Run the receive loop until :meth:`request_stop`; then shut down gracefully."""
        if self._router is None:
            self.start()
        try:
            self._loop()
        finally:
            self._shutdown()

    def run_in_thread(self) -> str:
        """``start()`` then serve on a background thread (tests, benchmarks)."""
        endpoint = self.start()
        self._thread = threading.Thread(target=self.serve_forever, name="mtm-node", daemon=True)
        self._thread.start()
        return endpoint

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        return self._ready.wait(timeout_s)

    def request_stop(self) -> None:
        """Thread- and signal-safe: finish queued requests, then stop."""
        self._stop.set()

    def request_reload(self, checkpoint: str | None = None, force: bool = False) -> None:
        """Thread- and signal-safe: reload ``checkpoint`` (default: the served one's path).

        Not confined to ``allow_reload`` (the operator's own reload); a different model is
        refused unless ``force``.
        """
        with self._lock:
            self._pending_reload = (checkpoint or self._checkpoint_path, force)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop and wait (for nodes run with :meth:`run_in_thread`)."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- receive loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        assert self._router is not None and self._results is not None
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._results, zmq.POLLIN)
        inline = self.config.inline_lone_requests
        while not self._stop.is_set():
            events = dict(poller.poll(100))
            if self._results in events:
                self._forward_results()
            if self._router in events:
                lone: Job | None = None  # the pass's only act request so far
                router = self._router
                for _ in range(256):
                    if not int(router.get(zmq.EVENTS)) & zmq.POLLIN:  # no zmq.Again per pass
                        break
                    frames = router.recv_multipart(zmq.NOBLOCK)
                    try:
                        job = self._handle(frames)
                    except Exception:  # even a failed error reply must not end the loop
                        log.exception("a message could not be answered; dropped")
                        continue
                    if job is None:
                        continue
                    if inline and lone is None:
                        lone = job
                        continue
                    if lone is not None:  # a second one: both to the batcher, at once
                        self._submit(lone)
                        lone, inline = None, False
                    self._submit(job)
                inline = self.config.inline_lone_requests
                if lone is not None and not self._batcher.run_inline(lone, self._deliver_inline):
                    self._submit(lone)
            with self._lock:
                pending, self._pending_reload = self._pending_reload, None
            if pending is not None:
                self._start_reload(*pending, None, None)

    def _forward_results(self) -> None:
        assert self._router is not None and self._results is not None
        while True:
            try:
                frames = self._results.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._send(frames)

    def _send(self, frames: list[bytes]) -> None:
        assert self._router is not None
        try:
            self._router.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # peer gone or over its high-water mark: drop
            self.stats.count("dropped_replies")
            log.debug("reply dropped: %s", exc)

    def _reply(
        self, envelope: list[bytes], header: dict[str, Any], arrays: dict[str, Any] | None = None
    ) -> None:
        self._send([*envelope, b"", *wire.encode(header, arrays)])

    def _error(
        self, envelope: list[bytes], rid: int | str | None, rtype: str, code: str, message: str
    ) -> None:
        self.stats.count_error(code)
        if envelope:
            self._reply(envelope, wire.error_header(rid, rtype, code, message))

    def _submit(self, job: Job) -> None:
        if not self._batcher.submit(job):
            message = f"{self.config.max_queue} requests already queued"
            self._error(job.envelope, job.request_id, "act", wire.OVERLOADED, message)

    def _handle(self, frames: list[bytes]) -> Job | None:
        """Answer one message, or return the job of a checked ``act`` request for the caller
        to run or queue; whatever it holds, the receive loop goes on (errors are replies)."""
        received = time.monotonic()
        self.stats.count("requests")
        envelope, body = wire.split_envelope(frames)
        try:  # array values are checked once, with their range, in context_from_message
            message = wire.decode(body, self.config.max_message_bytes, check_finite=False)
        except wire.ProtocolError as exc:
            self._error(envelope, exc.request_id, exc.request_type, exc.code, exc.message)
            return None
        except Exception as exc:  # the codec's own bug: answer it and keep serving
            log.exception("decoding a message failed")
            self._error(envelope, None, "", wire.INTERNAL, f"{type(exc).__name__}")
            return None
        rid = message.request_id
        assert rid is not None  # decode checked it
        try:
            if message.type in NO_ARRAY_TYPES and message.arrays:
                raise wire.ProtocolError(
                    wire.BAD_REQUEST,
                    f"{message.type} requests carry no arrays, got {sorted(message.arrays)}",
                )
            if message.type == "act":
                return self._handle_act(message, envelope, received)
            elif message.type == "metadata":
                self._ok(envelope, message, body=self._engine.metadata())
            elif message.type == "health":
                self._ok(envelope, message, body=self._health())
            elif message.type == "stats":
                snapshot = self.stats.snapshot()
                snapshot.update(model_id=self.model_id, queue_depth=self._batcher.depth)
                self._ok(envelope, message, body=snapshot)
            elif message.type == "reload":
                self._handle_reload(message, envelope)
            else:
                raise wire.ProtocolError(
                    wire.UNKNOWN_TYPE,
                    f"type {message.type!r:.40} unknown; known: {list(wire.REQUEST_TYPES)}",
                )
        except wire.ProtocolError as exc:
            self._error(envelope, rid, message.type[:32], exc.code, exc.message)
        except Exception as exc:  # the node's own bug: answer it and keep serving
            log.exception("handling a %s request failed", message.type[:32])
            self._error(envelope, rid, message.type[:32], wire.INTERNAL, f"{type(exc).__name__}")
        return None

    def _ok(self, envelope: list[bytes], message: wire.Message, body: dict[str, Any]) -> None:
        self._reply(
            envelope,
            {
                "id": message.request_id,
                "type": message.type,
                "status": wire.STATUS_OK,
                "model_id": self.model_id,
                "body": body,
            },
        )

    def _health(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "model_id": self.model_id,
            "reloading": self._reloading.is_set(),
            "queue_depth": self._batcher.depth,
            "warmup_s": round(self._engine.warmup_s, 3),
        }

    def _handle_act(
        self, message: wire.Message, envelope: list[bytes], received: float
    ) -> Job | None:
        """The checked job of an ``act`` request (None: answered already, expired)."""
        if not self.ready:
            raise wire.ProtocolError(wire.NOT_READY, "the node is still warming up")
        engine = self._engine
        context = context_from_message(
            message,
            engine.checkpoint.spec,
            engine.predictor.modes,
            engine.predictor.normalizer,
            engine.return_scale,
        )
        budget_ms = deadline_ms(message.header)
        now = time.monotonic()
        self.stats.record("decode", now - received)
        deadline = None if budget_ms is None else received + budget_ms / 1e3
        assert message.request_id is not None
        if deadline is not None and now > deadline:
            self.stats.count("expired")
            header = wire.error_header(
                message.request_id, "act", wire.EXPIRED, "deadline passed on arrival"
            )
            self._reply(envelope, {**header, "model_id": self.model_id})
            return None
        return Job(context, message.request_id, envelope, received, now, deadline)

    # -- inference thread -----------------------------------------------------------------------
    def _connect_push(self) -> zmq.Socket:
        push = self.context.socket(zmq.PUSH)
        push.linger = 1000
        push.sndhwm = 0
        push.connect(self._results_address)
        return push

    def _warm_up(self) -> None:
        try:
            self._engine.warmup_s = warm_up(self._engine.predictor, self.config.backend.max_batch)
        except Exception:
            log.exception("warm-up failed; the node stays not ready")
            return
        self._ready.set()
        log.info("warmed up in %.2f s: ready", self._engine.warmup_s)

    def _deliver(self, job: Job, outcome: Outcome) -> None:
        """Encode one act reply and hand it to the receive loop (inference thread)."""
        assert self._push is not None
        self._push.send_multipart(self._reply_frames(job, outcome))

    def _deliver_inline(self, job: Job, outcome: Outcome) -> None:
        """Encode one act reply and send it (receive loop, a job run inline)."""
        self.stats.count("inline")
        self._send(self._reply_frames(job, outcome))

    def _reply_frames(self, job: Job, outcome: Outcome) -> list[bytes]:
        """The frames (envelope first) of an act reply; records the encode stage."""
        start = time.monotonic()
        if outcome.prediction is None:
            if outcome.code == wire.EXPIRED:
                self.stats.count("expired")
            else:
                self.stats.count_error(outcome.code)
            header = wire.error_header(job.request_id, "act", outcome.code, outcome.message)
            header["model_id"] = outcome.model_id or self.model_id
            frames = wire.encode(header)
        else:
            self.stats.count("ok")
            timings = dict(outcome.timings_us)
            timings["decode"] = round((job.queued - job.received) * 1e6, 1)
            timings["server"] = round((start - job.received) * 1e6, 1)
            header = {
                "id": job.request_id,
                "type": "act",
                "status": wire.STATUS_OK,
                "model_id": outcome.model_id,
                "mode": job.context.mode,
                "history": outcome.prediction.history,
                "timings_us": timings,
            }
            if job.context.return_target is not None:  # in model units, as the model saw it
                header["return_target"] = job.context.return_target
            frames = wire.encode(header, prediction_arrays(outcome.prediction))
        done = time.monotonic()
        self.stats.record("encode", done - start)
        self.stats.record("server_total", done - job.received)
        return [*job.envelope, b"", *frames]

    # -- reload -------------------------------------------------------------------------------
    def _handle_reload(self, message: wire.Message, envelope: list[bytes]) -> None:
        allowed = self.config.allow_reload
        if not allowed:
            raise wire.ProtocolError(
                wire.FORBIDDEN,
                "remote reload is off on this node; its operator can allow it with "
                "--allow-reload DIR (checkpoints under DIR only) or reload by SIGHUP",
            )
        path = message.header.get("checkpoint", self._checkpoint_path)
        if not isinstance(path, str) or not path:
            raise wire.ProtocolError(wire.BAD_REQUEST, "checkpoint: expected a path string")
        force = message.header.get("force", False)
        if not isinstance(force, bool):
            raise wire.ProtocolError(wire.BAD_REQUEST, "force: expected true or false")
        resolved = allowed_reload_path(str(resolve_checkpoint_path(path)), allowed)
        if resolved is None:
            raise wire.ProtocolError(
                wire.FORBIDDEN,
                f"checkpoint {path[:200]!r} is not under {Path(allowed).resolve()} (the "
                "directory this node reloads from; symlinks and '..' are resolved first)",
            )
        if self._reloading.is_set():
            raise wire.ProtocolError(wire.BUSY, "a reload is already running")
        assert message.request_id is not None
        self._start_reload(str(resolved), force, envelope, message.request_id)

    def _start_reload(
        self, path: str, force: bool, envelope: list[bytes] | None, rid: int | str | None
    ) -> None:
        if self._reloading.is_set():
            log.warning("reload of %s ignored: a reload is already running", path)
            return
        self._reloading.set()
        threading.Thread(
            target=self._reload, args=(path, force, envelope, rid), name="mtm-reload", daemon=True
        ).start()

    def _check_same_model(self, path: str, force: bool) -> None:
        """Refuse another spec always, and another model of the same spec unless forced."""
        served, candidate = self._engine.checkpoint.metadata, read_metadata(path)
        if spec := spec_differences(served, candidate):
            raise ConfigError(f"spec differs ({'; '.join(spec)}): restart the node to serve it")
        if (differences := model_differences(served, candidate)) and not force:
            raise wire.ProtocolError(
                wire.MODEL_MISMATCH,
                f"{path} is a different model from {self.model_id} ({'; '.join(differences)}); "
                "send force: true to serve it anyway",
            )

    def _reload(
        self, path: str, force: bool, envelope: list[bytes] | None, rid: int | str | None
    ) -> None:
        push = self._connect_push()
        try:
            header: dict[str, Any]
            try:
                self._check_same_model(str(resolve_checkpoint_path(path)), force)
                engine = load_engine(path, self.config.backend, warm=True)
            except wire.ProtocolError as exc:
                log.error("reload of %s refused; still serving %s: %s", path, self.model_id, exc)
                self.stats.count_error(exc.code)
                header = wire.error_header(rid, "reload", exc.code, exc.message)
                header["model_id"] = self.model_id
            except Exception as exc:
                log.exception("reload of %s failed; still serving %s", path, self.model_id)
                self.stats.count_error(wire.RELOAD_FAILED)
                header = wire.error_header(rid, "reload", wire.RELOAD_FAILED, f"{path}: {exc}")
                header["model_id"] = self.model_id
            else:
                previous = self.model_id
                self._engine = engine  # atomic swap: the next batch runs the new model
                self._checkpoint_path = str(engine.checkpoint.path or path)
                self.stats.count("reloads")
                log.info("reloaded: %s -> %s", previous, engine.model_id)
                header = {
                    "id": rid,
                    "type": "reload",
                    "status": wire.STATUS_OK,
                    "model_id": engine.model_id,
                    "body": {
                        "previous_model_id": previous,
                        "model_id": engine.model_id,
                        "warmup_s": round(engine.warmup_s, 3),
                    },
                }
            # done before the reply leaves: a client that reloads again as soon as it hears
            # back must not find this reload still running ('busy')
            self._reloading.clear()
            if envelope is not None:
                push.send_multipart([*envelope, b"", *wire.encode(header)])
        finally:
            push.close()
            self._reloading.clear()

    # -- shutdown -----------------------------------------------------------------------------
    def _shutdown(self) -> None:
        if self._router is not None:  # answer what already arrived, then finish the queue
            for _ in range(self.config.max_queue):
                try:
                    job = self._handle(self._router.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
                if job is not None:
                    self._submit(job)
        log.info("shutting down: finishing %d queued requests", self._batcher.depth)
        self._batcher.stop()
        if self._push is not None:
            self._push.close()
        if self._router is not None and self._results is not None:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and self._results.poll(20):
                self._forward_results()
            self._results.close()
            self._router.close()
        if self._auth is not None:
            self._auth.stop()
        if self._own_context:
            self.context.term()
        self._stopped.set()
        log.info("inference node stopped")
