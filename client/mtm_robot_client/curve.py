"""CurveZMQ on the client side: key files and the socket options (pyzmq only).

Key files are ZeroMQ certificate files (``NAME.key`` public, ``NAME.key_secret`` secret), as
``zmq.auth.create_certificates`` (or ``python launch/keygen.py``) writes them. The node accepts
only clients whose public key is in its allow-list (``docs/protocol.md`` section 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from mtm_robot_client.errors import KeyFileError


def load_keypair(secret_file: str | Path) -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` certificate file."""
    path = Path(secret_file)
    if not path.is_file():
        raise KeyFileError(f"curve key file {path} does not exist")
    public, secret = zmq.auth.load_certificate(str(path))
    if secret is None:
        raise KeyFileError(f"{path} holds no secret key (pass the .key_secret file)")
    return public, secret


def load_public_key(public_file: str | Path) -> bytes:
    """The public key of a ``.key`` (or ``.key_secret``) certificate file."""
    path = Path(public_file)
    if not path.is_file():
        raise KeyFileError(f"curve key file {path} does not exist")
    public, _ = zmq.auth.load_certificate(str(path))
    return public


@dataclass
class CurveClient:
    """Client side: its own secret key file and the node's public key file."""

    secret_file: str
    server_public_file: str

    def apply(self, socket: zmq.Socket) -> None:
        """Set the CURVE options on ``socket`` (before it connects)."""
        public, secret = load_keypair(self.secret_file)
        socket.curve_publickey = public
        socket.curve_secretkey = secret
        socket.curve_serverkey = load_public_key(self.server_public_file)
