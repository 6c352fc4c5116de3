"""CurveZMQ on the node side and the loopback rule (pyzmq only). The client side (key files,
``CurveClient``) is :mod:`mtm_robot_client.curve`.

A node bound to anything but loopback must use CurveZMQ: it holds a secret key, and only
clients whose public keys sit in an allow-list directory may connect (``zmq.auth``'s
ThreadAuthenticator). Key files are ZeroMQ certificate files (``name.key`` public,
``name.key_secret`` secret), as written by :func:`generate_keypair`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from mtm_robot.errors import ConfigError
from mtm_robot_client.curve import CurveClient, load_keypair, load_public_key

__all__ = [
    "CurveClient",
    "CurveServer",
    "bind_endpoint",
    "generate_keypair",
    "is_loopback",
    "load_keypair",
    "load_public_key",
]

log = logging.getLogger(__name__)


def is_loopback(endpoint: str) -> bool:
    """True for ``tcp://127.x.x.x:port``, ``tcp://localhost:port``, ``tcp://[::1]:port``,
    ``ipc://`` and ``inproc://``; False for every other address (``*``, ``0.0.0.0``, ...)."""
    if endpoint.startswith(("ipc://", "inproc://")):
        return True
    if not endpoint.startswith("tcp://"):
        return False
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_endpoint(socket: zmq.Socket, endpoint: str, flag: str = "--bind") -> str:
    """Bind ``socket`` to ``endpoint`` and return the address it got (``LAST_ENDPOINT``: the
    real port of ``tcp://127.0.0.1:0``). A bind ZeroMQ refuses (port in use, an address this
    machine does not have, a malformed endpoint) is a :class:`ConfigError` naming the endpoint
    and the setting that chose it, not a traceback."""
    try:
        socket.bind(endpoint)
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EADDRINUSE:
            hint = "another process is bound there: stop it or choose another port"
        elif exc.errno == zmq.EADDRNOTAVAIL:
            hint = "this machine has no such address"
        else:
            hint = "expected e.g. tcp://127.0.0.1:5555"
        raise ConfigError(f"{flag} {endpoint!r}: cannot bind ({exc.strerror}); {hint}") from exc
    return str(socket.getsockopt_string(zmq.LAST_ENDPOINT))


def generate_keypair(directory: str | Path, name: str) -> tuple[Path, Path]:
    """Write ``name.key`` (public) and ``name.key_secret`` (secret, mode 0600)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(directory), name)
    os.chmod(secret, 0o600)
    return Path(public), Path(secret)


@dataclass
class CurveServer:
    """Node side: its secret key file and the directory of allowed client public keys."""

    secret_file: str
    allowed_clients_dir: str

    def apply(self, context: zmq.Context, socket: zmq.Socket) -> ThreadAuthenticator:
        """Make ``socket`` a CURVE server; returns the started authenticator (stop it).

        ZeroMQ allows one authenticator per context: give every CURVE server socket in a
        process (a node, a broker frontend) its own context.
        """
        allowed = Path(self.allowed_clients_dir)
        if not allowed.is_dir() or not list(allowed.glob("*.key")):
            raise ConfigError(f"curve allow-list {allowed} has no client public keys (*.key)")
        public, secret = load_keypair(self.secret_file)
        auth = ThreadAuthenticator(context, log=logging.getLogger("mtm_robot.serving.auth"))
        auth.start()
        auth.configure_curve(domain="*", location=str(allowed))
        socket.curve_secretkey = secret
        socket.curve_publickey = public
        socket.curve_server = True
        return auth
