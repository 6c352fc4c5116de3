"""The protocol's error codes as exceptions (``docs/protocol.md`` section 7).

Every error reply raises the :class:`NodeError` subclass of its code, so a robot stack can
catch exactly what it handles::

    try:
        reply = client.act("return_conditioned", state, return_target=0.9)
    except OutOfRange as exc:       # e.g. a state in the wrong units
        ...
    except NodeError as exc:        # any other error reply; exc.code, exc.message
        ...
    except NodeTimeoutError:        # no reply in time: node down, overloaded, unreachable
        ...

:class:`ProtocolError` is a message the codec cannot accept (raised by ``decode`` on the node,
and by ``encode`` for a header that breaks the protocol); ``code`` is the code its reply gets.
"""

from __future__ import annotations

from typing import Any

# Error codes (``error.code`` in a reply).
BAD_MESSAGE = "bad_message"  # frames, JSON or header fields malformed
TOO_LARGE = "too_large"  # over the size cap (checked before decoding)
BAD_VERSION = "bad_version"  # protocol version not served
UNKNOWN_TYPE = "unknown_type"
BAD_DTYPE = "bad_dtype"  # dtype not in the allow-list
BAD_SHAPE = "bad_shape"  # shape does not match the frame or the model spec
NOT_FINITE = "not_finite"  # NaN or infinity in an array, a header number, or the model's output
OUT_OF_RANGE = "out_of_range"  # finite but absurd: past float32, or far outside the training data
BAD_REQUEST = "bad_request"  # unknown mode, missing or unexpected field
NOT_READY = "not_ready"  # warm-up not finished
OVERLOADED = "overloaded"  # request queue full
BUSY = "busy"  # a reload is already running
RELOAD_FAILED = "reload_failed"
FORBIDDEN = "forbidden"  # remote reload off, or the checkpoint is outside the allowed dir
MODEL_MISMATCH = "model_mismatch"  # reload: a different model of the same dims (not forced)
SHUTTING_DOWN = "shutting_down"
INTERNAL = "internal"  # the node's fault; it keeps serving
EXPIRED = "expired"  # deadline passed before the request ran (status ``expired``)


class MTMRobotError(Exception):
    """Base class of every error mtm-robot and its client raise on purpose.

    ``mtm_robot.errors.MTMRobotError`` is this class, so the main package's launchers treat a
    client error as bad input (one ``error:`` line), not as a bug.
    """


class ProtocolError(MTMRobotError, ValueError):
    """A message that cannot be accepted; ``code`` is the reply's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id: int | str | None = None  # filled in once the header's id is known
        self.request_type = ""


class NodeTimeoutError(MTMRobotError, TimeoutError):
    """No reply within the timeout (node down, overloaded or unreachable)."""


class NodeError(MTMRobotError):
    """The node answered with an error; ``code`` and ``message`` as in its reply.

    Raised as the subclass of its code (:func:`error_for`); a code this client does not know
    (a newer node) raises a plain ``NodeError``.
    """

    code = ""

    def __init__(self, code: str, message: str, reply: Any = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.reply = reply  # the client's Reply, when raised for one


class BadMessage(NodeError):
    """Frames, JSON or header fields malformed (``bad_message``)."""

    code = BAD_MESSAGE


class TooLarge(NodeError):
    """Over a size cap: message, header frame or one array's span (``too_large``)."""

    code = TOO_LARGE


class BadVersion(NodeError):
    """``v`` is not the integer 1 (``bad_version``)."""

    code = BAD_VERSION


class UnknownType(NodeError):
    """The request ``type`` is unknown (``unknown_type``)."""

    code = UNKNOWN_TYPE


class BadDtype(NodeError):
    """An array dtype outside float32/float64 (``bad_dtype``)."""

    code = BAD_DTYPE


class BadShape(NodeError):
    """A frame length, shape limit or model dimension mismatch (``bad_shape``)."""

    code = BAD_SHAPE


class NotFinite(NodeError):
    """NaN or infinity in the request, or in the model's output for it (``not_finite``)."""

    code = NOT_FINITE


class OutOfRange(NodeError):
    """Finite but absurd input, or a return target outside the accepted range
    (``out_of_range``)."""

    code = OUT_OF_RANGE


class BadRequest(NodeError):
    """Unknown mode, missing, unexpected or mistyped field or array (``bad_request``)."""

    code = BAD_REQUEST


class NotReady(NodeError):
    """The node is still warming up (``not_ready``)."""

    code = NOT_READY


class Overloaded(NodeError):
    """The node's request queue is full (``overloaded``)."""

    code = OVERLOADED


class Busy(NodeError):
    """A reload is already running (``busy``)."""

    code = BUSY


class ReloadFailed(NodeError):
    """The new checkpoint could not be loaded; the old one still serves (``reload_failed``)."""

    code = RELOAD_FAILED


class Forbidden(NodeError):
    """Remote reload is off, or the checkpoint is outside the allowed directory
    (``forbidden``)."""

    code = FORBIDDEN


class ModelMismatch(NodeError):
    """Reload of a different model of the same dimensions without ``force`` (``model_mismatch``)."""

    code = MODEL_MISMATCH


class ShuttingDown(NodeError):
    """The node is stopping (``shutting_down``)."""

    code = SHUTTING_DOWN


class Internal(NodeError):
    """The node's own fault; it keeps serving (``internal``)."""

    code = INTERNAL


class Expired(NodeError):
    """The deadline passed before the request ran (``status: expired``)."""

    code = EXPIRED


#: Every ``error.code`` a reply can carry -> its exception class (section 7, in its order).
ERROR_CLASSES: dict[str, type[NodeError]] = {
    cls.code: cls
    for cls in (
        BadMessage, TooLarge, BadVersion, UnknownType, BadDtype, BadShape, NotFinite,
        OutOfRange, BadRequest, NotReady, Overloaded, Busy, ReloadFailed, Forbidden,
        ModelMismatch, ShuttingDown, Internal, Expired,
    )
}  # fmt: skip
#: Every ``error.code`` a reply can carry (the schema's ``$defs.error_code`` lists the same).
ERROR_CODES = tuple(ERROR_CLASSES)


def error_for(code: str, message: str, reply: Any = None) -> NodeError:
    """The exception for an error reply: the class of ``code``, or ``NodeError`` if unknown."""
    return ERROR_CLASSES.get(code, NodeError)(code, message, reply)


class KeyFileError(MTMRobotError, ValueError):
    """A CurveZMQ key file is missing or does not hold the key it should."""
