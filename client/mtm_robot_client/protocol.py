"""The wire protocol of the inference node: header and array codec, limits, schema.

A message is a ZeroMQ multipart message::

    [envelope ...] b""  header  array_0  array_1 ...

* ``envelope``: routing frames added by ROUTER sockets (the client's identity, and a broker's);
  a DEALER client sends nothing before the empty delimiter frame and receives nothing before it.
* ``header``: one UTF-8 JSON object (see ``docs/protocol.md``). Its ``arrays`` list names each
  following frame: ``{"name": ..., "dtype": "float32" | "float64", "shape": [...]}``.
* ``array_i``: the raw C-order little-endian bytes of array ``i``.

The one home of the wire code: the node (``mtm_robot.serving``) and every Python client import
it from here. Only the standard library and numpy are imported. No pickle, no object dtypes;
the total size is checked before anything is decoded. Error codes and their exceptions are in
:mod:`mtm_robot_client.errors`.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from mtm_robot_client.errors import (  # the codes travel with the codec (node: wire.BAD_SHAPE)
    BAD_DTYPE,
    BAD_MESSAGE,
    BAD_REQUEST,
    BAD_SHAPE,
    BAD_VERSION,
    BUSY,
    ERROR_CODES,
    EXPIRED,
    FORBIDDEN,
    INTERNAL,
    MODEL_MISMATCH,
    NOT_FINITE,
    NOT_READY,
    OUT_OF_RANGE,
    OVERLOADED,
    RELOAD_FAILED,
    SHUTTING_DOWN,
    TOO_LARGE,
    UNKNOWN_TYPE,
    ProtocolError,
)

PROTOCOL_VERSION = 1
#: Request types the node answers.
REQUEST_TYPES = ("act", "metadata", "health", "stats", "reload")
#: Reply statuses.
STATUS_OK, STATUS_ERROR, STATUS_EXPIRED = "ok", "error", "expired"
#: Wire dtype name -> little-endian numpy dtype. Nothing else is accepted.
DTYPES: dict[str, np.dtype[Any]] = {"float32": np.dtype("<f4"), "float64": np.dtype("<f8")}
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20  # 1 MiB
MAX_HEADER_BYTES = 64 * 1024
MAX_ARRAYS = 16
MAX_NDIM = 4
MAX_ID_CHARS = 128
MAX_ABS_ID = 2**53  # integer ids satisfy |id| < 2**53 (exact in every JSON parser)
#: The header's JSON Schema (package data of ``mtm_robot_client``; ``docs/protocol.md`` section 3).
SCHEMA_FILE = "protocol.schema.json"

__all__ = [
    "BAD_DTYPE",
    "BAD_MESSAGE",
    "BAD_REQUEST",
    "BAD_SHAPE",
    "BAD_VERSION",
    "BUSY",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DTYPES",
    "ERROR_CODES",
    "EXPIRED",
    "FORBIDDEN",
    "INTERNAL",
    "MAX_ABS_ID",
    "MAX_ARRAYS",
    "MAX_HEADER_BYTES",
    "MAX_ID_CHARS",
    "MAX_NDIM",
    "MODEL_MISMATCH",
    "NOT_FINITE",
    "NOT_READY",
    "OUT_OF_RANGE",
    "OVERLOADED",
    "PROTOCOL_VERSION",
    "RELOAD_FAILED",
    "REQUEST_TYPES",
    "SCHEMA_FILE",
    "SHUTTING_DOWN",
    "STATUS_ERROR",
    "STATUS_EXPIRED",
    "STATUS_OK",
    "TOO_LARGE",
    "UNKNOWN_TYPE",
    "Message",
    "ProtocolError",
    "decode",
    "decode_frames",
    "encode",
    "error_header",
    "load_schema",
    "readable_id",
    "split_envelope",
]


@dataclass
class Message:
    """A decoded header plus its arrays (read-only views on the received frames)."""

    header: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def request_id(self) -> int | str | None:
        value = self.header.get("id")
        return value if isinstance(value, int | str) and not isinstance(value, bool) else None

    @property
    def type(self) -> str:
        return str(self.header.get("type", ""))


def split_envelope(frames: Sequence[bytes]) -> tuple[list[bytes], list[bytes]]:
    """``[envelope..., b"", body...]`` -> (envelope, body); no delimiter: the first frame is
    the whole envelope (a ROUTER identity) and the rest the body."""
    for i, frame in enumerate(frames):
        if len(frame) == 0:
            return list(frames[:i]), list(frames[i + 1 :])
    return list(frames[:1]), list(frames[1:])


def load_schema() -> dict[str, Any]:
    """The JSON Schema of request and reply headers (``$defs.request``, ``$defs.reply``)."""
    text = resources.files("mtm_robot_client").joinpath(SCHEMA_FILE).read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _check_number(value: Any, where: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ProtocolError(NOT_FINITE, f"{where}: expected a finite number, got {value}")


def readable_id(value: Any) -> int | str | None:
    """``value`` if it is a valid request id (int with |id| < 2**53, str of <= 128 chars)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if -MAX_ABS_ID < value < MAX_ABS_ID else None
    if isinstance(value, str):
        return value if len(value) <= MAX_ID_CHARS else None
    return None


class _NumberWatch(threading.local):
    """Set by the JSON decoder's number hooks when a number may not be finite (per thread)."""

    suspect = False


_WATCH = _NumberWatch()
_INFINITIES = (math.inf, -math.inf)
_MAX_FINITE_INT_DIGITS = 300  # a longer int literal may exceed a double: check it exactly


def _float_literal(text: str) -> float:
    value = float(text)
    if value in _INFINITIES:  # 1e400
        _WATCH.suspect = True
    return value


def _int_literal(text: str) -> int:
    if len(text) > _MAX_FINITE_INT_DIGITS:
        _WATCH.suspect = True
    return int(text)


def _constant_literal(text: str) -> float:
    _WATCH.suspect = True  # NaN, Infinity, -Infinity
    return float(text)


#: One decoder for every header: its hooks flag a number that may not be finite while
#: parsing, so the path-naming walk (:func:`_non_finite`) runs only on such a header.
_DECODER = json.JSONDecoder(
    parse_float=_float_literal, parse_int=_int_literal, parse_constant=_constant_literal
)


def _parse_header(frame: bytes) -> tuple[Any, bool]:
    """JSON text -> (value, whether a number in it may not be finite); ``NaN``/``Infinity``
    literals become floats for :func:`_non_finite`."""
    _WATCH.suspect = False
    try:
        value = _DECODER.decode(bytes(frame).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError(BAD_MESSAGE, f"header is not UTF-8 JSON: {exc}") from exc
    return value, _WATCH.suspect


def _non_finite(header: dict[str, Any]) -> str | None:
    """Path of the first number that is not finite (NaN, +-Infinity, 1e400, a 400-digit int)."""
    stack: list[tuple[str, Any]] = [("header", header)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            stack.extend((f"{where}.{str(k)[:32]}", v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, int | float) and not abs(value) <= sys.float_info.max:
            return where  # NaN, +-inf, or an int too large for a double (exact comparison)
    return None


def _with_request(exc: ProtocolError, header: Any) -> ProtocolError:
    """Attach the header's id and type to ``exc`` when they can be read."""
    if isinstance(header, dict):
        exc.request_id = readable_id(header.get("id"))
        rtype = header.get("type")
        exc.request_type = rtype[:32] if isinstance(rtype, str) else ""
    return exc


def _array_specs(
    header: dict[str, Any], n_frames: int, max_bytes: int
) -> list[tuple[str, np.dtype[Any], tuple]]:
    specs = header.get("arrays", [])
    if not isinstance(specs, list):
        raise ProtocolError(BAD_MESSAGE, f"header.arrays: expected a list, got {specs!r:.60}")
    if len(specs) > MAX_ARRAYS:
        raise ProtocolError(BAD_MESSAGE, f"at most {MAX_ARRAYS} arrays, got {len(specs)}")
    if len(specs) != n_frames:
        raise ProtocolError(
            BAD_MESSAGE, f"header lists {len(specs)} arrays but {n_frames} array frames follow"
        )
    out: list[tuple[str, np.dtype[Any], tuple]] = []
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict):
            raise ProtocolError(BAD_MESSAGE, f"header.arrays[{i}]: expected an object")
        name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
        if not isinstance(name, str) or not 0 < len(name) <= 64 or name in seen:
            raise ProtocolError(BAD_MESSAGE, f"header.arrays[{i}].name: bad or repeated name")
        seen.add(name)
        if not isinstance(dtype, str) or dtype not in DTYPES:
            raise ProtocolError(
                BAD_DTYPE, f"{name}: dtype {dtype!r:.40} not allowed; allowed: {sorted(DTYPES)}"
            )
        # Python ints: no overflow. Zero dims count as 1, so numpy can always reshape an
        # empty frame to this shape (it refuses shapes whose other dims overflow an intp).
        span = DTYPES[dtype].itemsize
        dims: list[Any] = shape if isinstance(shape, list) and len(shape) <= MAX_NDIM else []
        for s in dims:  # type() is int: not a bool, not a float
            if type(s) is not int or not 0 <= s < 1 << 31:
                span = -1
                break
            span *= s or 1
        if span < 0 or dims is not shape:
            raise ProtocolError(
                BAD_SHAPE, f"{name}: shape must be a list of at most {MAX_NDIM} ints in [0, 2**31)"
            )
        if span > max_bytes:
            raise ProtocolError(
                TOO_LARGE,
                f"{name}: shape {shape} {dtype} spans {span} bytes (zero dims counted as 1); "
                f"the cap is {max_bytes}",
            )
        out.append((name, DTYPES[dtype], tuple(dims)))
    return out


def decode(
    body: Sequence[bytes],
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    check_finite: bool = True,
    require_id: bool = True,
) -> Message:
    """Frames after the delimiter -> :class:`Message`; raises :class:`ProtocolError`.

    The size caps are checked before any array is decoded; a too-large message whose header
    frame is within ``MAX_HEADER_BYTES`` still has its header read, so the error carries the
    request's id. Arrays are zero-copy read-only views.
    """
    if not body:
        raise ProtocolError(BAD_MESSAGE, "no header frame")
    if len(body[0]) > MAX_HEADER_BYTES:
        raise ProtocolError(TOO_LARGE, f"header over {MAX_HEADER_BYTES} bytes")
    total = sum(len(f) for f in body)
    if total > max_message_bytes:
        too_large = ProtocolError(
            TOO_LARGE, f"message is {total} bytes; the cap is {max_message_bytes}"
        )
        try:
            header: Any = _parse_header(body[0])[0]
        except ProtocolError:
            header = None
        raise _with_request(too_large, header)
    header, suspect = _parse_header(body[0])
    if not isinstance(header, dict):
        raise ProtocolError(BAD_MESSAGE, "header: expected a JSON object")
    try:
        version = header.get("v")
        if type(version) is not int or version != PROTOCOL_VERSION:
            raise ProtocolError(
                BAD_VERSION,
                f"protocol version {version!r:.20} not served; expected the integer "
                f"{PROTOCOL_VERSION}",
            )
        rid = header.get("id")
        if (rid is not None or require_id) and readable_id(rid) is None:
            raise ProtocolError(
                BAD_MESSAGE,
                f"header.id: expected an integer with |id| < 2**53 or a string of at most "
                f"{MAX_ID_CHARS} characters, got {type(rid).__name__} {str(rid)[:40]}",
            )
        where = _non_finite(header) if suspect else None
        if where is not None:
            raise ProtocolError(NOT_FINITE, f"{where}: numbers must be finite (and fit a double)")
        if not isinstance(header.get("type"), str):
            raise ProtocolError(BAD_MESSAGE, "header.type: expected a string")
        arrays = _decode_arrays(header, body, check_finite, max_message_bytes)
    except ProtocolError as exc:
        raise _with_request(exc, header) from None
    return Message(header, arrays)


def _decode_arrays(
    header: dict[str, Any], body: Sequence[bytes], check_finite: bool, max_bytes: int
) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    specs = _array_specs(header, len(body) - 1, max_bytes)
    for (name, dtype, shape), frame in zip(specs, body[1:]):
        expected = math.prod(shape) * dtype.itemsize
        if len(frame) != expected:
            raise ProtocolError(
                BAD_SHAPE,
                f"{name}: shape {list(shape)} {dtype.name} needs {expected} bytes, "
                f"frame has {len(frame)}",
            )
        array = np.frombuffer(frame, dtype=dtype).reshape(shape)
        if check_finite and not np.isfinite(array).all():
            raise ProtocolError(NOT_FINITE, f"{name}: contains NaN or infinity")
        arrays[name] = array
    return arrays


def decode_frames(
    frames: Sequence[bytes], max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
) -> Message:
    """Decode a reply as a DEALER receives it (``b""`` delimiter first; ``id`` may be null)."""
    _, body = split_envelope(frames)
    return decode(body, max_message_bytes, check_finite=False, require_id=False)


def encode(
    header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None
) -> list[bytes]:
    """Header (``v`` and ``arrays`` filled in) plus arrays -> body frames (no envelope)."""
    out_header = {"v": PROTOCOL_VERSION, **header}
    frames: list[bytes] = []
    specs = []
    for name, value in (arrays or {}).items():
        array = np.asarray(value)
        wire = "float64" if array.dtype == np.float64 else "float32"
        array = np.ascontiguousarray(array, dtype=DTYPES[wire])
        specs.append({"name": name, "dtype": wire, "shape": list(array.shape)})
        frames.append(array.tobytes())
    out_header["arrays"] = specs
    for key, value in out_header.items():
        if isinstance(value, float) and not math.isfinite(value):  # json.dumps says less
            _check_number(value, f"header.{key}")
    text = json.dumps(out_header, separators=(",", ":"), allow_nan=False)
    return [text.encode("utf-8"), *frames]


def error_header(
    request_id: int | str | None, request_type: str, code: str, message: str
) -> dict[str, Any]:
    """The header of an error (or ``expired``) reply."""
    status = STATUS_EXPIRED if code == EXPIRED else STATUS_ERROR
    return {
        "id": request_id,
        "type": request_type,
        "status": status,
        "error": {"code": code, "message": message[:500]},
    }
