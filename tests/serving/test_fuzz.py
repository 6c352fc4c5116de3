"""Property-based fuzzing of the node with hypothesis (issue 12).

Headers are generated in the shape of ``protocol.schema.json`` and then mutated: sizes at and
past every limit, element counts whose product overflows, wrong dtypes and versions, frame
counts off by one, huge/zero/negative dimensions, non-finite and huge finite numbers. After
each batch the node still answers ``health``; every reply validates against the reply
schema, echoes every readable id, and no ``ok`` reply carries a non-finite array or answers a
request holding an absurd value. Bounded: ``max_examples`` batches of at most 8 messages.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

import jsonschema
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtm_robot_client import protocol as wire

SCHEMA = wire.load_schema()
REPLY_VALIDATOR = jsonschema.Draft202012Validator({**SCHEMA, "$ref": "#/$defs/reply"})
CAP = 4096  # the node's max_message_bytes in this test (frames stay under ZMQ_MAXMSGSIZE)
ABSURD = 1e20  # any value this large must never produce an ``ok`` action
DS, DA = 5, 2  # the tiny checkpoint's state and action dims

INTS = st.sampled_from(
    [0, 1, 2, 5, 24, 2**31 - 1, 2**31, -1, -(2**31), 2**53, 2**63, 10**30, CAP // 4, CAP]
) | st.integers(-3, 70_000)
DIMS = st.lists(INTS, max_size=6) | st.sampled_from(
    [[DS], [1, DS], [0, 2**31 - 1, 2**31 - 1], [2**16, 2**16, 0], [2**31 - 1, 0], [], [0]]
)
DTYPES = st.sampled_from(["float32", "float64"]) | st.sampled_from(
    ["int64", "float16", ">f4", "<f4", "|O", "", "FLOAT32", None, 3, ["float32"]]
)
NUMBERS = st.sampled_from(
    [0.0, 1.0, -1.0, 0.85, 850.0, 1e4, 1e20, -1e20, 3e38, 1e300, math.nan, math.inf, -math.inf]
) | st.floats(allow_nan=True, allow_infinity=True)
VALUES = st.sampled_from([0.0, 1.0, -2.5, 1e3, 1e20, -3e38, 1e200, math.nan, math.inf])
IDS: st.SearchStrategy[Any] = st.sampled_from(
    [2**53 - 1, 2**53, -(2**53), 10**400, 1.5, True, None, "", "x" * 128, "x" * 129, [1], {}]
)
MODE_ARRAYS = {
    "inverse_dynamics": {"future_states": [1, DS]},
    "forward_dynamics": {"planned_actions": [2, DA]},
    "goal": {"goal_state": [DS]},
}
NAMES = ["state", "history_states", "history_actions", "future_states", "goal_state",
         "planned_actions", "x", "", "state"]  # fmt: skip


@dataclass
class Sent:
    rid: Any  # the id the reply must carry (None: unreadable)
    absurd: bool  # holds a non-finite or absurdly large value somewhere
    frames: list[bytes]


def _array_frame(
    draw: st.DrawFn, dtype: Any, shape: Any, exact: bool = False
) -> tuple[bytes, bool]:
    """A frame for ``shape``: right-sized (from a value pool), off by some bytes, or empty."""
    itemsize = 8 if dtype == "float64" else 4
    count = 1
    if isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape):
        for s in shape:
            count *= s
    size = count * itemsize
    kinds = ["exact"] * (16 if exact else 3) + ["short", "long", "empty", "cap"]
    kind = draw(st.sampled_from(kinds))
    if kind == "exact" and size <= 2 * CAP:
        value = draw(st.sampled_from([0.0, 1.0, -2.5, 3.0, 1e3] * 3) | VALUES)
        np_dtype = "<f8" if dtype == "float64" else "<f4"
        with np.errstate(over="ignore"):
            data = np.full(count, value, dtype=np_dtype)
        absurd = count > 0 and (not math.isfinite(value) or abs(value) >= ABSURD)
        return data.tobytes(), absurd
    if kind == "short" and 0 < size <= 2 * CAP:
        return b"\0" * (size - 1), False
    if kind == "long" and size < 2 * CAP:
        return b"\0" * (size + draw(st.integers(1, 9))), False
    if kind == "cap":
        return b"\0" * (CAP + 1), False
    return b"", False


@st.composite
def messages(draw: st.DrawFn, rid: int) -> Sent:
    rtype = draw(st.sampled_from(["act"] * 4 + ["metadata", "health", "stats", "dance"]))
    header: dict[str, Any] = {"v": 1, "id": rid, "type": rtype}
    mode = draw(st.sampled_from(["behavior_cloning", "return_conditioned", "inverse_dynamics",
                                 "forward_dynamics", "goal", "two_stage", "teleport"]))  # fmt: skip
    if rtype == "act":
        header["mode"] = mode
    well_formed = rtype == "act" and mode != "teleport" and draw(st.integers(0, 2)) > 0
    if not well_formed:
        if draw(st.booleans()):
            header["return_target"] = draw(NUMBERS)
        if draw(st.booleans()):
            header["return_target_units"] = draw(
                st.sampled_from(["model", "normalized", "episode_return", "furlongs", 1])
            )
        if draw(st.booleans()):
            header["deadline_ms"] = draw(NUMBERS | st.sampled_from(["soon", None, True, 10**400]))
    specs, frames, absurd = [], [], False
    if well_formed:  # a well-formed request for the mode ...
        arrays = {"state": [DS], **MODE_ARRAYS.get(mode, {})}
        if draw(st.booleans()):
            k = draw(st.integers(0, 5))
            arrays.update(history_states=[k, DS], history_actions=[k, DA])
        if mode in ("return_conditioned", "two_stage"):
            header["return_target"] = draw(st.sampled_from([0.0, 1.5, -3.0]) | NUMBERS)
        for name, shape in arrays.items():  # ... whose values come from the pool
            dtype = draw(st.sampled_from(["float32", "float64"]))
            specs.append({"name": name, "dtype": dtype, "shape": shape})
            frame, bad = _array_frame(draw, dtype, shape, exact=True)
            frames.append(frame)
            absurd |= bad
    for _ in range(draw(st.integers(0, 0 if well_formed else 4))):
        name = draw(st.sampled_from(NAMES))
        wild_dtype: Any = draw(DTYPES)
        shape = draw(DIMS)
        specs.append({"name": name, "dtype": wild_dtype, "shape": shape})
        frame, bad = _array_frame(draw, wild_dtype, shape)
        frames.append(frame)
        absurd |= bad
    header["arrays"] = specs
    # mutations of the header as a whole
    mutation = "none" if well_formed else draw(
        st.sampled_from(["none"] * 4 + ["v", "id", "drop_frame", "extra_frame", "arrays_type",
                                        "pad", "raw_constant", "not_object", "truncate", "no_id"])
    )  # fmt: skip
    readable = True
    if mutation == "v":
        header["v"] = draw(st.sampled_from([1.0, True, 2, 0, "1", None, 10**30]))
    elif mutation == "id":
        header["id"] = draw(IDS)
        readable = wire.readable_id(header["id"]) is not None
    elif mutation == "drop_frame" and frames:
        frames.pop(draw(st.integers(0, len(frames) - 1)))
    elif mutation == "extra_frame":
        frames.append(draw(st.binary(max_size=64)))
    elif mutation == "arrays_type":
        header["arrays"] = draw(st.sampled_from([{}, "state", 3, [None], [[]]]))
    elif mutation == "no_id":
        del header["id"]
        readable = False
    target, deadline = header.get("return_target"), header.get("deadline_ms")
    absurd |= isinstance(target, float) and (not math.isfinite(target) or abs(target) >= ABSURD)
    absurd |= isinstance(deadline, float) and not math.isfinite(deadline)  # 1e20 ms is valid
    absurd &= rtype == "act"  # other types ignore act fields; non-finite numbers: see below
    text = json.dumps(header, allow_nan=True)
    if mutation == "pad":  # a header at or past MAX_HEADER_BYTES
        size = draw(st.sampled_from([wire.MAX_HEADER_BYTES - 200, wire.MAX_HEADER_BYTES + 1]))
        text = text[:-1] + ', "pad": "' + "p" * max(0, size - len(text) - 12) + '"}'
        readable = readable and len(text.encode()) <= wire.MAX_HEADER_BYTES
    elif mutation == "raw_constant":  # numbers JSON allows but no double holds, and literals
        literal = draw(st.sampled_from(["1e400", "-1e400", "NaN", "Infinity", "1" * 400]))
        text = text[:-1] + f', "extra": [{literal}]}}'
        absurd = True
    elif mutation == "not_object":
        text = json.dumps([header])
        readable = False
    elif mutation == "truncate":
        text = text[: draw(st.integers(0, max(0, len(text) - 1)))]
        readable = False
    return Sent(header.get("id") if readable else None, absurd, [text.encode(), *frames])


def _key(rid: Any) -> tuple[str, Any]:
    return (type(rid).__name__, rid)  # 1 and "1" are different ids


def _reply_arrays(frames: list[bytes]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    message = wire.decode_frames(frames, max_message_bytes=1 << 24)
    return message.header, message.arrays


@pytest.mark.slow
def test_fuzzed_headers_never_kill_the_node_nor_lose_ids(start_node, zmq_context):
    node = start_node(max_message_bytes=CAP)
    sock = zmq_context.socket(zmq.DEALER)
    sock.linger = 0
    sock.rcvtimeo = 5000
    sock.connect(node.endpoint)

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
    )
    @given(st.data())
    def batch(data: st.DataObject) -> None:
        # ids 1..8 within a batch (every reply of a batch is read before the next one)
        sent = [data.draw(messages(i)) for i in range(1, data.draw(st.integers(1, 8)) + 1)]
        for message in sent:
            sock.send_multipart([b"", *message.frames])
        replies = [_reply_arrays(sock.recv_multipart()) for _ in sent]
        for header, arrays in replies:
            REPLY_VALIDATOR.validate(header)
            if header["status"] == "ok":
                for name, array in arrays.items():
                    assert np.isfinite(array).all(), (name, header)
        # every readable id is echoed (ids may repeat within a batch: compare as multisets)
        echoed = Counter(_key(header["id"]) for header, _ in replies)
        expected = Counter(_key(m.rid) for m in sent)
        assert echoed == expected, [m.frames[0][:120] for m in sent]
        status = {_key(h["id"]): h["status"] for h, _ in replies}
        for message in sent:
            if message.absurd and message.rid is not None and expected[_key(message.rid)] == 1:
                assert status[_key(message.rid)] != "ok", message.frames[0][:200]
        health = wire.encode({"id": "health", "type": "health"})
        sock.send_multipart([b"", *health])
        header, _ = _reply_arrays(sock.recv_multipart())
        assert header["id"] == "health" and header["body"]["ready"] is True

    batch()
    sock.send_multipart([b"", *wire.encode({"id": "stats", "type": "stats"})])
    stats, _ = _reply_arrays(sock.recv_multipart())
    counters = stats["body"]["counters"]
    print("fuzz:", counters, stats["body"]["errors"])
    # the fuzz reached the model (some requests ran) and the error paths
    assert counters["ok"] > 0 and counters["errors"] > 0 and node.ready
