"""mtm-robot-client: talk to an mtm-robot inference node with numpy and pyzmq only.

::

    from mtm_robot_client import NodeClient, OutOfRange

    with NodeClient("tcp://127.0.0.1:5555", timeout_ms=100) as client:
        meta = client.metadata()
        reply = client.act("return_conditioned", state, return_target=0.9,
                           return_target_units="normalized")
        action = reply.action

The wire protocol is ``docs/protocol.md``; :mod:`.protocol` is its codec (the node uses the
same module), :mod:`.errors` its error codes as exceptions, :mod:`.modes` the inference modes.
"""

from __future__ import annotations

from mtm_robot_client.client import NodeClient, Reply, act_request
from mtm_robot_client.curve import CurveClient
from mtm_robot_client.errors import (
    ERROR_CLASSES,
    ERROR_CODES,
    BadDtype,
    BadMessage,
    BadRequest,
    BadShape,
    BadVersion,
    Busy,
    Expired,
    Forbidden,
    Internal,
    KeyFileError,
    ModelMismatch,
    MTMRobotError,
    NodeError,
    NodeTimeoutError,
    NotFinite,
    NotReady,
    OutOfRange,
    Overloaded,
    ProtocolError,
    ReloadFailed,
    ShuttingDown,
    TooLarge,
    UnknownType,
    error_for,
)
from mtm_robot_client.modes import MODES, Mode
from mtm_robot_client.protocol import PROTOCOL_VERSION, load_schema

__version__ = "0.1.0"

__all__ = [
    "ERROR_CLASSES",
    "ERROR_CODES",
    "MODES",
    "PROTOCOL_VERSION",
    "BadDtype",
    "BadMessage",
    "BadRequest",
    "BadShape",
    "BadVersion",
    "Busy",
    "CurveClient",
    "Expired",
    "Forbidden",
    "Internal",
    "KeyFileError",
    "MTMRobotError",
    "Mode",
    "ModelMismatch",
    "NodeClient",
    "NodeError",
    "NodeTimeoutError",
    "NotFinite",
    "NotReady",
    "OutOfRange",
    "Overloaded",
    "ProtocolError",
    "ReloadFailed",
    "Reply",
    "ShuttingDown",
    "TooLarge",
    "UnknownType",
    "act_request",
    "error_for",
    "load_schema",
]
