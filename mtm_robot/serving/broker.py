"""Scale-out: a ZeroMQ broker spreading requests over several inference nodes.

Clients connect their DEALER to the broker's ROUTER frontend exactly as to a node; the
broker's DEALER backend connects to every node's ROUTER endpoint and hands requests out
round-robin (``zmq.proxy``). Requests are stateless, so any node can answer any request; the
routing envelope (client identity, broker identity) travels in front of the ``b""`` delimiter
and brings each reply back to its client. Note: ZeroMQ's round-robin does not skip a node that
is alive but slow, and requests queued for a node that dies are lost (the client times out,
reconnects and retries). Off loopback, the frontend needs CurveZMQ (the same allow-list
scheme as a node) or an explicit ``insecure``.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Sequence

import zmq

from mtm_robot.errors import ConfigError
from mtm_robot.serving.security import CurveServer, bind_endpoint, is_loopback
from mtm_robot_client.curve import CurveClient

log = logging.getLogger(__name__)

_broker_ids = itertools.count()


class Broker:
    """ROUTER frontend (clients) <-> DEALER backend (nodes), run on a background thread."""

    def __init__(
        self,
        frontend: str,
        nodes: Sequence[str],
        context: zmq.Context | None = None,
        insecure: bool = False,
        curve: CurveServer | None = None,
        node_curve: CurveClient | None = None,
    ) -> None:
        """``curve``: CurveZMQ on the frontend (clients); ``node_curve``: the broker's own key
        pair and the nodes' public key, for nodes that run CurveZMQ."""
        if not nodes:
            raise ConfigError("a broker needs at least one node endpoint")
        if not is_loopback(frontend) and curve is None and not insecure:
            raise ConfigError(
                f"broker frontend {frontend} is not loopback: pass CurveZMQ keys or "
                "insecure=True (--insecure) explicitly"
            )
        self.curve = curve
        self.node_curve = node_curve
        self._auth: object = None
        self._own_context = context is None
        self.context = context or zmq.Context()
        self.frontend_address = frontend
        self.nodes = list(nodes)
        self._control_address = f"inproc://mtm-broker-{id(self)}-{next(_broker_ids)}"
        self._thread: threading.Thread | None = None
        self.endpoint = ""
        self._bound = threading.Event()

    def start(self) -> str:
        """Bind the frontend, connect to the nodes, start proxying; returns the endpoint."""
        control = self.context.socket(zmq.PAIR)
        control.bind(self._control_address)
        self._control = control
        self._thread = threading.Thread(target=self._run, name="mtm-broker", daemon=True)
        self._thread.start()
        if not self._bound.wait(10):
            raise RuntimeError("broker did not start")
        log.info("broker on %s -> %s", self.endpoint, self.nodes)
        return self.endpoint

    def _run(self) -> None:
        frontend = self.context.socket(zmq.ROUTER)
        backend = self.context.socket(zmq.DEALER)
        control = self.context.socket(zmq.PAIR)
        for socket in (frontend, backend, control):
            socket.linger = 0
        frontend.sndhwm = frontend.rcvhwm = backend.sndhwm = backend.rcvhwm = 100_000
        if self.curve is not None:
            self._auth = self.curve.apply(self.context, frontend)
        if self.node_curve is not None:
            self.node_curve.apply(backend)
        self.endpoint = bind_endpoint(frontend, self.frontend_address)
        for node in self.nodes:
            backend.connect(node)
        control.connect(self._control_address)
        self._bound.set()
        try:
            zmq.proxy_steerable(frontend, backend, None, control)
        except zmq.ContextTerminated:
            pass
        finally:
            frontend.close()
            backend.close()
            control.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._thread is None:
            return
        self._control.send(b"TERMINATE")
        self._thread.join(timeout_s)
        self._control.close(linger=0)
        self._thread = None
        if self._auth is not None:
            self._auth.stop()  # type: ignore[attr-defined]
        if self._own_context:
            self.context.term()
