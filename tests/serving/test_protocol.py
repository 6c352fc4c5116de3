from __future__ import annotations

import json

import numpy as np
import pytest

from mtm_robot.serving.contexts import context_from_message, deadline_ms
from mtm_robot_client import protocol as wire
from mtm_robot_client.modes import MODES as MODE_TABLE

from .conftest import SPEC

MODES = tuple(MODE_TABLE)  # every mode a request can ask for


def _frames(header: dict, arrays: dict[str, np.ndarray] | None = None) -> list[bytes]:
    return wire.encode({"id": 7, "type": "act", **header}, arrays)


def _raw(header: dict, *frames: bytes) -> list[bytes]:
    return [json.dumps(header).encode(), *frames]


def _code(body: list[bytes], cap: int = wire.DEFAULT_MAX_MESSAGE_BYTES) -> str:
    with pytest.raises(wire.ProtocolError) as info:
        wire.decode(body, cap)
    return info.value.code


def test_round_trip_keeps_values_dtypes_and_shapes():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.array([1.5, -2.25], dtype=np.float64)
    message = wire.decode(_frames({"mode": "goal"}, {"a": a, "b": b}))
    assert message.header["mode"] == "goal" and message.request_id == 7
    assert message.header["v"] == wire.PROTOCOL_VERSION
    np.testing.assert_array_equal(message.arrays["a"], a)
    np.testing.assert_array_equal(message.arrays["b"], b)
    assert message.arrays["b"].dtype == np.float64 and message.arrays["a"].shape == (3, 4)


def test_arrays_are_little_endian_on_the_wire():
    frames = _frames({}, {"x": np.array([1.0], dtype=">f4")})
    assert frames[1] == np.array([1.0], dtype="<f4").tobytes()


def test_size_cap_is_checked_before_parsing():
    body = [b"not json at all" * 100]
    assert _code(body, cap=1024) == wire.TOO_LARGE
    assert _code(body) == wire.BAD_MESSAGE


@pytest.mark.parametrize("dtype", ["int64", "object", "|O", ">f4", "float16", 3, None])
def test_dtypes_outside_the_allow_list_are_refused(dtype):
    body = _raw(
        {
            "v": 1,
            "id": 1,
            "type": "act",
            "arrays": [{"name": "state", "dtype": dtype, "shape": [1]}],
        },
        b"\0" * 8,
    )
    assert _code(body) == wire.BAD_DTYPE


@pytest.mark.parametrize(
    ("header", "frames", "code"),
    [
        ({"v": 2, "id": 1, "type": "act"}, [], wire.BAD_VERSION),
        ({"id": 1, "type": "act"}, [], wire.BAD_VERSION),
        ({"v": 1, "type": "act"}, [], wire.BAD_MESSAGE),
        ({"v": 1, "id": True, "type": "act"}, [], wire.BAD_MESSAGE),
        ({"v": 1, "id": 1, "type": 5}, [], wire.BAD_MESSAGE),
        ({"v": 1, "id": 1, "type": "act"}, [b"\0" * 4], wire.BAD_MESSAGE),  # extra frame
        (
            {
                "v": 1,
                "id": 1,
                "type": "act",
                "arrays": [{"name": "s", "dtype": "float32", "shape": [2]}],
            },
            [],
            wire.BAD_MESSAGE,
        ),
        (
            {
                "v": 1,
                "id": 1,
                "type": "act",
                "arrays": [{"name": "s", "dtype": "float32", "shape": [2]}],
            },
            [b"\0" * 4],
            wire.BAD_SHAPE,
        ),
        (
            {
                "v": 1,
                "id": 1,
                "type": "act",
                "arrays": [{"name": "s", "dtype": "float32", "shape": [-1]}],
            },
            [b""],
            wire.BAD_SHAPE,
        ),
        (
            {
                "v": 1,
                "id": 1,
                "type": "act",
                "arrays": [{"name": "s", "dtype": "float32", "shape": [2**40, 2**40]}],
            },
            [b""],
            wire.BAD_SHAPE,
        ),
        ({"v": 1, "id": 1, "type": "act", "arrays": {"s": 1}}, [], wire.BAD_MESSAGE),
    ],
)
def test_malformed_headers_get_specific_codes(header, frames, code):
    assert _code(_raw(header, *frames)) == code


def test_non_finite_values_are_refused():
    nan = np.array([1.0, np.nan], dtype=np.float32)
    assert _code(_frames({}, {"state": nan})) == wire.NOT_FINITE
    assert _code([b'{"v": 1, "id": 1, "type": "act", "return_target": NaN}']) == wire.NOT_FINITE
    with pytest.raises(ValueError, match="finite"):
        wire.encode({"id": 1, "type": "act", "return_target": float("inf")})


def test_errors_after_the_id_is_known_carry_it():
    with pytest.raises(wire.ProtocolError) as info:
        wire.decode(_raw({"v": 9, "id": "abc", "type": "stats"}))
    assert (info.value.request_id, info.value.request_type) == ("abc", "stats")


def test_garbage_is_refused_not_raised():
    rng = np.random.default_rng(0)
    for _ in range(300):
        body = [rng.bytes(int(rng.integers(1, 64))) for _ in range(int(rng.integers(1, 4)))]
        with pytest.raises(wire.ProtocolError):
            wire.decode(body)
    assert _code([b"[" * 100_000]) == wire.TOO_LARGE  # header over MAX_HEADER_BYTES
    # deep nesting below the cap: RecursionError inside json becomes a bad_message reply
    assert _code([b"[" * 60_000]) == wire.BAD_MESSAGE


def test_split_envelope_handles_brokers_and_missing_delimiters():
    assert wire.split_envelope([b"id", b"", b"h", b"a"]) == ([b"id"], [b"h", b"a"])
    assert wire.split_envelope([b"broker", b"client", b"", b"h"]) == (
        [b"broker", b"client"],
        [b"h"],
    )
    assert wire.split_envelope([b"id", b"h"]) == ([b"id"], [b"h"])


# -- act requests against the spec -------------------------------------------------------------
def _act(mode: str, arrays: dict[str, np.ndarray], **header: object) -> wire.Message:
    return wire.decode(_frames({"mode": mode, **header}, arrays))


def _good_arrays(mode: str) -> dict[str, np.ndarray]:
    arrays = {
        "state": np.ones(5, np.float32),
        "history_states": np.ones((2, 5), np.float32),
        "history_actions": np.ones((2, 2), np.float32),
    }
    extra = {
        "inverse_dynamics": ("future_states", (1, 5)),
        "goal": ("goal_state", (5,)),
        "forward_dynamics": ("planned_actions", (3, 2)),
    }
    if mode in extra:
        name, shape = extra[mode]
        arrays[name] = np.ones(shape, np.float32)
    return arrays


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_builds_a_context(mode):
    header = {"return_target": 3.0} if mode in ("return_conditioned", "two_stage") else {}
    ctx = context_from_message(_act(mode, _good_arrays(mode), **header), SPEC, MODES)
    assert ctx.history_states is not None
    assert ctx.mode == mode and ctx.state.shape == (5,) and ctx.history_states.shape == (2, 5)
    assert ctx.return_target == (3.0 if header else None)


@pytest.mark.parametrize(
    ("mode", "change", "header", "code"),
    [
        ("teleport", {}, {}, wire.BAD_REQUEST),
        ("behavior_cloning", {"state": np.ones(4, np.float32)}, {}, wire.BAD_SHAPE),
        ("behavior_cloning", {"goal_state": np.ones(5, np.float32)}, {}, wire.BAD_REQUEST),
        ("behavior_cloning", {"history_actions": np.ones((3, 2), np.float32)}, {}, wire.BAD_SHAPE),
        ("behavior_cloning", {}, {"return_target": 1.0}, wire.BAD_REQUEST),
        ("return_conditioned", {}, {}, wire.BAD_REQUEST),
        ("return_conditioned", {}, {"return_target": "high"}, wire.BAD_REQUEST),
        ("inverse_dynamics", {"future_states": np.ones((0, 5), np.float32)}, {}, wire.BAD_SHAPE),
        ("forward_dynamics", {"planned_actions": np.ones((2, 5), np.float32)}, {}, wire.BAD_SHAPE),
    ],
)
def test_bad_act_requests_are_refused(mode, change, header, code):
    arrays = {**_good_arrays(mode if mode in MODES else "behavior_cloning"), **change}
    with pytest.raises(wire.ProtocolError) as info:
        context_from_message(_act(mode, arrays, **header), SPEC, MODES)
    assert info.value.code == code


def test_missing_required_array_and_deadline_parsing():
    arrays = _good_arrays("behavior_cloning")
    with pytest.raises(wire.ProtocolError, match="future_states"):
        context_from_message(_act("inverse_dynamics", arrays), SPEC, MODES)
    assert deadline_ms({"deadline_ms": 5}) == 5.0 and deadline_ms({}) is None
    with pytest.raises(wire.ProtocolError):
        deadline_ms({"deadline_ms": "soon"})
