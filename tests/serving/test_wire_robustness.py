"""Issue 12: the node survives anything on the wire and says only what is true.

Each test here failed on the node before the fix it guards (one message killed the node,
absurd inputs came back as an all-NaN ``ok`` action, error replies lost their id, the node was
laxer than ``docs/protocol.md``).
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
import zmq

from mtm_robot.data.normalize import Normalizer
from mtm_robot.inference import Predictor
from mtm_robot.model.mtm import MTM, ModelConfig
from mtm_robot.serving.backends import BackendConfig, Engine, load_engine
from mtm_robot.training.checkpoint import load_checkpoint, save_checkpoint
from mtm_robot_client import NodeError
from mtm_robot_client import protocol as wire

from .conftest import SPEC

SCHEMA = wire.load_schema()
REQUEST_VALIDATOR = jsonschema.Draft202012Validator(
    {**SCHEMA, "$ref": "#/$defs/request"}, format_checker=None
)
REPLY_VALIDATOR = jsonschema.Draft202012Validator({**SCHEMA, "$ref": "#/$defs/reply"})
HUGE_SHAPE = [0, 2147483647, 2147483647]


def _dealer(context: zmq.Context, endpoint: str) -> zmq.Socket:
    socket = context.socket(zmq.DEALER)
    socket.linger = 0
    socket.rcvtimeo = 5000
    socket.connect(endpoint)
    return socket


def _ask(socket: zmq.Socket, header: dict | bytes, *frames: bytes) -> dict:
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    socket.send_multipart([b"", head, *frames])
    reply = wire.decode_frames(socket.recv_multipart())
    REPLY_VALIDATOR.validate(reply.header)
    return reply.header


def _state_header(rid: int | str = 1, dtype: str = "float32", **fields: object) -> dict:
    return {
        "v": 1,
        "id": rid,
        "type": "act",
        "mode": "behavior_cloning",
        **fields,
        "arrays": [{"name": "state", "dtype": dtype, "shape": [5]}],
    }


@pytest.fixture(scope="module")
def onnx_path(checkpoint_a: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mtm_robot.export.onnx import export_onnx

    checkpoint = load_checkpoint(checkpoint_a)
    return export_onnx(checkpoint, tmp_path_factory.mktemp("onnx") / "model.onnx")


@pytest.fixture(params=["torch", pytest.param("onnx", marks=pytest.mark.slow)])
def node(request, start_node, checkpoint_a):
    if request.param == "torch":
        return start_node()
    path = request.getfixturevalue("onnx_path")
    config = BackendConfig(backend="onnx", onnx_path=str(path), max_batch=8)
    return start_node(engine=load_engine(checkpoint_a, config, warm=False))


# -- defect 1: no request ends the node's loop ---------------------------------------------------
def test_decode_checks_sizes_before_reshaping():
    header = {"v": 1, "id": 1, "type": "health"}
    body = [
        json.dumps(
            {**header, "arrays": [{"name": "x", "dtype": "float32", "shape": HUGE_SHAPE}]}
        ).encode(),
        b"",
    ]
    with pytest.raises(wire.ProtocolError) as info:
        wire.decode(body)
    assert info.value.code == wire.TOO_LARGE and info.value.request_id == 1
    # an element count past the cap is refused even when a zero dimension makes it empty
    for shape in ([0, 1 << 30], [1 << 16, 1 << 16, 0], [0, 0, 0, 2**31 - 1]):
        spec = [{"name": "x", "dtype": "float64", "shape": shape}]
        with pytest.raises(wire.ProtocolError, match="zero dims counted as 1") as info:
            wire.decode([json.dumps({**header, "arrays": spec}).encode(), b""])
        assert info.value.code == wire.TOO_LARGE
    ok = [{"name": "x", "dtype": "float32", "shape": [0, 1000]}]
    assert wire.decode([json.dumps({**header, "arrays": ok}).encode(), b""]).arrays["x"].shape == (
        0,
        1000,
    )


def test_the_message_that_killed_the_node_gets_an_error_reply(node, zmq_context):
    sock = _dealer(zmq_context, node.endpoint)
    for rtype in ("health", "act", "metadata", "stats", "reload", "dance"):
        spec = [{"name": "x", "dtype": "float32", "shape": HUGE_SHAPE}]
        reply = _ask(sock, {"v": 1, "id": 7, "type": rtype, "arrays": spec}, b"")
        assert reply["status"] == "error" and reply["id"] == 7, reply
        assert reply["error"]["code"] == wire.TOO_LARGE
    assert _ask(sock, {"v": 1, "id": 8, "type": "health"})["body"]["ready"] is True


def test_an_exception_in_a_handler_is_an_internal_error_to_that_request_only(
    start_node, connect, zmq_context, monkeypatch
):
    node = start_node()

    def broken() -> dict:
        raise RuntimeError("boom")

    monkeypatch.setattr(node, "_health", broken)
    sock = _dealer(zmq_context, node.endpoint)
    reply = _ask(sock, {"v": 1, "id": "h", "type": "health"})
    assert reply["error"]["code"] == wire.INTERNAL and reply["id"] == "h"

    def broken_decode(*args, **kwargs):
        raise MemoryError("decode blew up")

    monkeypatch.setattr(wire, "decode", broken_decode)
    sock.send_multipart([b"", b'{"v": 1, "id": 9, "type": "stats"}'])
    frames = sock.recv_multipart()
    monkeypatch.undo()
    reply = wire.decode_frames(frames).header
    assert reply["error"]["code"] == wire.INTERNAL and reply["id"] is None
    assert connect(node.endpoint).stats()["errors"]["internal"] == 2


# -- defect 2: never ok with a non-finite array -------------------------------------------------
@pytest.mark.parametrize(
    ("mode", "arrays", "fields"),
    [
        ("behavior_cloning", {"state": np.full(5, 1e20, "<f4")}, {}),
        ("behavior_cloning", {"state": np.full(5, 3e38, "<f4")}, {}),
        ("behavior_cloning", {"state": np.full(5, 1e200, "<f8")}, {}),
        ("behavior_cloning", {"state": np.array([0, 0, 0, 0, 4e38], "<f8")}, {}),
        ("return_conditioned", {"state": np.zeros(5, "<f4")}, {"return_target": 1e20}),
        ("return_conditioned", {"state": np.zeros(5, "<f4")}, {"return_target": 1e300}),
        (
            "forward_dynamics",
            {"state": np.zeros(5, "<f4"), "planned_actions": np.full((1, 2), 1e20, "<f4")},
            {},
        ),
        (
            "behavior_cloning",
            {
                "state": np.zeros(5, "<f4"),
                "history_states": np.full((1, 5), 1e20, "<f4"),
                "history_actions": np.zeros((1, 2), "<f4"),
            },
            {},
        ),
        (
            "inverse_dynamics",
            {"state": np.zeros(5, "<f4"), "future_states": np.full((1, 5), -1e9, "<f4")},
            {},
        ),
        ("goal", {"state": np.zeros(5, "<f4"), "goal_state": np.full(5, 1e9, "<f4")}, {}),
    ],
)
def test_absurd_inputs_are_refused_as_out_of_range(node, zmq_context, mode, arrays, fields):
    sock = _dealer(zmq_context, node.endpoint)
    frames = wire.encode({"id": 3, "type": "act", "mode": mode, **fields}, arrays)
    reply = _ask(sock, frames[0], *frames[1:])
    assert reply["status"] == "error" and reply["id"] == 3
    assert reply["error"]["code"] == wire.OUT_OF_RANGE, reply


def test_inputs_inside_the_bound_are_served(start_node, connect):
    client = connect(start_node().endpoint)
    # tiny checkpoint: state mean ~1, std ~2; 1e3 is far out but within |normalised| <= 1e4
    reply = client.act("behavior_cloning", np.full(5, 1e3, np.float32))
    assert reply.ok and np.isfinite(reply.action).all()


def test_a_non_finite_model_output_is_never_ok(start_node, connect, checkpoint_a):
    checkpoint = load_checkpoint(checkpoint_a)

    def nan_forward(inputs, masks):
        return {n: np.full_like(v, np.nan) for n, v in inputs.items()}

    engine = Engine(
        Predictor(checkpoint.spec, checkpoint.normalizer, nan_forward), checkpoint, "torch", {}
    )
    client = connect(start_node(engine=engine).endpoint)
    with pytest.raises(NodeError, match="not_finite"):
        client.act("behavior_cloning", np.zeros(5, np.float32))
    assert client.health()["ready"]


# -- defect 4: every readable id is echoed --------------------------------------------------------
def test_too_large_and_non_finite_errors_echo_the_id(start_node, zmq_context):
    node = start_node(max_message_bytes=4096)
    sock = _dealer(zmq_context, node.endpoint)
    reply = _ask(sock, _state_header(11), b"\0" * 8000)
    assert reply["error"]["code"] == wire.TOO_LARGE and reply["id"] == 11
    assert reply["type"] == "act"
    for text in (
        b'{"v":1,"id":12,"type":"act","mode":"return_conditioned","return_target":Infinity}',
        b'{"v":1,"id":12,"type":"act","mode":"return_conditioned","return_target":1e400}',
        b'{"v":1,"id":12,"type":"act","mode":"behavior_cloning","deadline_ms":NaN}',
        b'{"v":1,"id":12,"type":"act","mode":"behavior_cloning","deadline_ms":-1e400}',
        b'{"v":1,"id":12,"type":"health","extra":[1,{"x":1e999}]}',
    ):
        reply = _ask(sock, text)
        assert reply["error"]["code"] == wire.NOT_FINITE and reply["id"] == 12, (text, reply)
    # an id that cannot be read is null, and says why
    reply = _ask(sock, b'{"v":1,"id":1e400,"type":"health"}')
    assert reply["id"] is None and reply["status"] == "error"


# -- defect 5: exactly as strict as the doc ----------------------------------------------------
@pytest.mark.parametrize(
    ("header", "code"),
    [
        ({"v": True, "id": 1, "type": "health"}, wire.BAD_VERSION),
        ({"v": 1.0, "id": 1, "type": "health"}, wire.BAD_VERSION),
        ({"v": "1", "id": 1, "type": "health"}, wire.BAD_VERSION),
        ({"v": 1, "id": 10**400, "type": "health"}, wire.BAD_MESSAGE),
        ({"v": 1, "id": 2**53, "type": "health"}, wire.BAD_MESSAGE),
        ({"v": 1, "id": -(2**53), "type": "health"}, wire.BAD_MESSAGE),
        ({"v": 1, "id": 1.5, "type": "health"}, wire.BAD_MESSAGE),
        ({"v": 1, "id": "x" * 129, "type": "health"}, wire.BAD_MESSAGE),
        ({"v": 1, "id": 1, "type": 3}, wire.BAD_MESSAGE),
    ],
)
def test_headers_are_checked_as_strictly_as_documented(header, code):
    with pytest.raises(wire.ProtocolError) as info:
        wire.decode([json.dumps(header).encode()])
    assert info.value.code == code
    if header["v"] == 1 and isinstance(header["v"], float):
        return  # JSON Schema counts 1.0 as an integer; the node (and the doc) do not
    with pytest.raises(jsonschema.ValidationError):
        REQUEST_VALIDATOR.validate(header)


def test_largest_documented_ids_are_echoed(start_node, zmq_context):
    sock = _dealer(zmq_context, start_node().endpoint)
    for rid in (2**53 - 1, -(2**53 - 1), "x" * 128, ""):
        reply = _ask(sock, {"v": 1, "id": rid, "type": "health"})
        assert reply["status"] == "ok" and reply["id"] == rid


def test_requests_without_arrays_refuse_arrays(start_node, zmq_context):
    sock = _dealer(zmq_context, start_node().endpoint)
    spec = [{"name": "x", "dtype": "float32", "shape": [1]}]
    one = np.zeros(1, "<f4").tobytes()
    for rtype in ("metadata", "health", "stats"):
        reply = _ask(sock, {"v": 1, "id": 5, "type": rtype, "arrays": spec}, one)
        assert reply["error"]["code"] == wire.BAD_REQUEST and reply["id"] == 5


def test_deadline_and_return_target_share_one_code_per_fault(start_node, zmq_context):
    sock = _dealer(zmq_context, start_node().endpoint)
    state = np.zeros(5, "<f4").tobytes()
    for field in ("deadline_ms", "return_target"):
        mode = "return_conditioned" if field == "return_target" else "behavior_cloning"
        base = _state_header(4, mode=mode)
        if field == "return_target":
            base["return_target"] = 1.0
        reply = _ask(sock, json.dumps({**base, field: "soon"}).encode(), state)
        assert reply["error"]["code"] == wire.BAD_REQUEST, (field, reply)
        text = json.dumps({**base, field: 0.5}).replace("0.5", "1e400", 1).encode()
        reply = _ask(sock, text, state)
        assert reply["error"]["code"] == wire.NOT_FINITE, (field, reply)


# -- return targets in the units people think in -----------------------------------------------
@pytest.fixture(scope="module")
def checkpoint_with_returns(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(5)
    model = MTM(SPEC, ModelConfig(width=32, encoder_layers=1, decoder_layers=1, heads=2))
    rng = np.random.default_rng(5)
    data = {n: rng.normal(1.0, 2.0, size=(64, d)) for n, d in SPEC.modalities.items()}
    data["returns"] = rng.uniform(0.0, 1.0, size=(64, 1))
    metadata = {
        "model_id": "tiny-returns",
        "return_stats": {"return_min": 0.0, "return_max": 1.0},
        "training": {"data": {"returns": "average", "return_horizon": 1000}},
        "action_bounds": {"low": [-1.0, -1.0], "high": [1.0, 1.0]},
    }
    directory = tmp_path_factory.mktemp("ckpt") / "tiny-returns"
    return save_checkpoint(directory, model.eval(), Normalizer.fit(data), metadata)


def test_metadata_publishes_return_range_units_and_action_bounds(
    start_node, connect, checkpoint_with_returns
):
    client = connect(start_node(checkpoint=str(checkpoint_with_returns)).endpoint)
    meta = client.metadata()
    assert meta["return_stats"] == {"return_min": 0.0, "return_max": 1.0}
    targets = meta["return_target"]
    assert targets["units"] == ["model", "normalized", "episode_return"]
    assert targets["accepted"]["model"] == [-1.0, 2.0]
    assert targets["accepted"]["normalized"] == [-1.0, 2.0]
    assert targets["accepted"]["episode_return"] == [-1000.0, 2000.0]
    assert targets["horizon"] == 1000
    assert meta["action_bounds"] == {"low": [-1.0, -1.0], "high": [1.0, 1.0], "clipped": False}


def test_return_targets_in_every_unit_and_out_of_range_refused(
    start_node, connect, checkpoint_with_returns
):
    client = connect(start_node(checkpoint=str(checkpoint_with_returns)).endpoint)
    state = np.zeros(5, np.float32)
    replies = [
        client.act("return_conditioned", state, return_target=0.85),
        client.act(
            "return_conditioned", state, return_target=0.85, return_target_units="normalized"
        ),
        client.act(
            "return_conditioned", state, return_target=850.0, return_target_units="episode_return"
        ),
    ]
    for reply in replies:
        assert reply.header["return_target"] == pytest.approx(0.85)
        np.testing.assert_allclose(reply.action, replies[0].action, atol=1e-6)
    with pytest.raises(NodeError, match=r"out_of_range.*episode_return"):
        client.act("return_conditioned", state, return_target=850.0)  # the doc's old example
    with pytest.raises(NodeError, match="bad_request"):
        client.act("return_conditioned", state, return_target=1.0, return_target_units="furlongs")


def test_units_need_the_model_to_know_its_returns(start_node, connect):
    client = connect(start_node().endpoint)  # tiny-a: no return_stats in its metadata
    meta = client.metadata()
    assert meta["return_target"]["units"] == ["model"] and meta["action_bounds"] is None
    with pytest.raises(NodeError, match=r"bad_request.*return_stats"):
        client.act(
            "return_conditioned",
            np.zeros(5, np.float32),
            return_target=0.5,
            return_target_units="normalized",
        )


def test_the_schema_file_is_valid_and_accepts_what_the_client_sends():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    header, arrays = (
        {"type": "act", "mode": "return_conditioned", "return_target": 1.0},
        {"state": np.zeros(5, np.float32)},
    )
    REQUEST_VALIDATOR.validate(json.loads(wire.encode({**header, "id": 1}, arrays)[0]))
    for rtype in ("metadata", "health", "stats", "reload"):
        REQUEST_VALIDATOR.validate({"v": 1, "id": "a", "type": rtype})


def test_the_schema_lists_every_error_code_the_node_can_send():
    assert SCHEMA["$defs"]["error_code"]["enum"] == list(wire.ERROR_CODES)


@pytest.mark.slow
def test_the_protocol_page_example_runs_against_the_shipped_model(start_node):
    """Section 9 of docs/protocol.md, as written (longer budgets for a loaded CI machine)."""
    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    section = doc[doc.index("## 9. Example") :]
    start = section.index("```python\n") + 10
    code = section[start : section.index("\n```", start)]
    node = start_node(checkpoint="default")
    code = code.replace("tcp://127.0.0.1:5555", node.endpoint)
    code = code.replace("sock.poll(50)", "sock.poll(10_000)").replace(
        '"deadline_ms": 20', '"deadline_ms": 10_000'
    )
    code = code.replace("sock.poll(20, zmq.POLLOUT)", "sock.poll(5_000, zmq.POLLOUT)")
    namespace: dict = {}
    exec(compile(code, "docs/protocol.md#9", "exec"), namespace)
    assert namespace["reply"]["status"] == "ok", namespace["reply"]
    assert namespace["reply"]["return_target"] == pytest.approx(0.85)
    assert namespace["action"].shape == (6,) and np.isfinite(namespace["action"]).all()
    namespace["sock"].close()
