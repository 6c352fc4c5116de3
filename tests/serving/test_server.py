from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from mtm_robot.errors import ConfigError
from mtm_robot.inference import Predictor, torch_forward
from mtm_robot.model.mtm import DataSpec
from mtm_robot.serving.backends import Engine
from mtm_robot.serving.contexts import context_arrays
from mtm_robot.serving.server import ServeConfig
from mtm_robot.training.checkpoint import load_checkpoint
from mtm_robot_client import NodeError
from mtm_robot_client import protocol as wire
from mtm_robot_client.modes import MODES as MODE_TABLE

from .conftest import direct_predictor, make_checkpoint, random_context, wait_for

MODES = tuple(MODE_TABLE)  # every mode a request can ask for


class GatedForward:
    """A torch forward that waits for ``gate`` (closed: the inference thread blocks).

    Tests that queue requests behind a blocked batch start their node with
    ``inline_lone_requests=False``: a lone request run inline would block the receive loop.
    """

    def __init__(self, path: Path) -> None:
        checkpoint = load_checkpoint(path)
        self.inner = torch_forward(checkpoint.model)
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0
        self.engine = Engine(
            Predictor(checkpoint.spec, checkpoint.normalizer, self), checkpoint, "torch", {}
        )

    def close(self) -> None:
        """From now on, forwards block until ``gate.set()``; ``calls`` counts from zero."""
        self.calls = 0
        self.gate.clear()

    def __call__(self, inputs, masks):
        self.calls += 1
        assert self.gate.wait(20), "test gate never opened"
        return self.inner(inputs, masks)


def _submit(client, ctx, **extra):
    fields = {"return_target": ctx.return_target} if ctx.return_target is not None else {}
    return client.send({"type": "act", "mode": ctx.mode, **fields, **extra}, context_arrays(ctx))


def _assert_matches(reply, expected):
    assert reply.ok, reply.header
    np.testing.assert_allclose(reply.action, expected.action, atol=1e-4)
    np.testing.assert_allclose(reply.action_chunk, expected.action_chunk, atol=1e-4)
    np.testing.assert_allclose(reply.next_states, expected.next_states, atol=1e-4)
    assert reply.header["history"] == expected.history


def test_act_matches_direct_prediction_in_every_mode(start_node, connect, checkpoint_a):
    node = start_node()
    client = connect(node.endpoint)
    direct = direct_predictor(checkpoint_a)
    rng = np.random.default_rng(1)
    for mode in MODES:
        ctx = random_context(mode, rng)
        reply = client.call(*_request(ctx)).raise_for_status()
        _assert_matches(reply, direct.predict(ctx))
        assert reply.model_id == "tiny-a" and reply.header["mode"] == mode
        assert set(reply.timings_us) >= {"decode", "queue", "inference", "server", "batch"}


def _request(ctx):
    fields = {"return_target": ctx.return_target} if ctx.return_target is not None else {}
    return {"type": "act", "mode": ctx.mode, **fields}, context_arrays(ctx)


def test_blocking_act_api(start_node, connect, checkpoint_a):
    node = start_node()
    client = connect(node.endpoint)
    ctx = random_context("return_conditioned", np.random.default_rng(2), history=0)
    reply = client.act("return_conditioned", ctx.state, return_target=ctx.return_target)
    _assert_matches(reply, direct_predictor(checkpoint_a).predict(ctx))
    with pytest.raises(NodeError, match="bad_request"):
        client.act("teleport", ctx.state)


def test_concurrent_mixed_requests_are_batched_and_each_gets_its_own_answer(
    start_node, connect, checkpoint_a
):
    gated = GatedForward(checkpoint_a)
    node = start_node(engine=gated.engine, max_batch=8, inline_lone_requests=False)
    client = connect(node.endpoint)
    direct = direct_predictor(checkpoint_a)
    rng = np.random.default_rng(3)
    contexts = [random_context(MODES[i % 6], rng, history=i % 3) for i in range(25)]
    gated.close()
    first = _submit(client, contexts[0])
    assert wait_for(lambda: gated.calls > 0 and node.queue_depth == 0)
    rids = [first] + [_submit(client, c) for c in contexts[1:]]
    assert wait_for(lambda: node.queue_depth == 24)
    gated.gate.set()
    for rid, ctx in zip(rids, contexts):
        reply = client.poll(rid, 5000)
        assert reply is not None and reply.request_id == rid
        _assert_matches(reply, direct.predict(ctx))
    stats = client.stats()
    assert stats["batch"]["histogram"]["8"] == 3  # 24 queued -> three full batches
    assert stats["counters"]["ok"] == 25


def test_metadata_health_and_stats(start_node, connect):
    node = start_node()
    client = connect(node.endpoint)
    meta = client.metadata()
    assert meta["model_id"] == "tiny-a" and len(meta["weights_sha256"]) == 64
    assert meta["modalities"] == {"states": 5, "actions": 2, "returns": 1}
    assert meta["segment_length"] == 4 and set(meta["modes"]) == set(MODES)
    assert meta["protocol_version"] == wire.PROTOCOL_VERSION
    health = client.health()
    assert health["ready"] is True and health["model_id"] == "tiny-a"
    client.act("behavior_cloning", np.zeros(5, np.float32))
    with pytest.raises(NodeError):
        client.act("behavior_cloning", np.zeros(4, np.float32))
    stats = client.stats()
    for stage in ("decode", "queue", "inference", "encode", "server_total"):
        assert stats["stages_us"][stage]["count"] >= 1
        assert stats["stages_us"][stage]["p99"] >= stats["stages_us"][stage]["p50"] > 0
    assert stats["counters"]["ok"] == 1 and stats["errors"] == {"bad_shape": 1}


def test_health_is_not_ready_until_warm_up_ends(start_node, connect, checkpoint_a):
    gated = GatedForward(checkpoint_a)
    gated.close()  # warm-up blocks
    node = start_node(engine=gated.engine, wait=False)
    client = connect(node.endpoint)
    assert client.health()["ready"] is False
    with pytest.raises(NodeError, match="not_ready"):
        client.act("behavior_cloning", np.zeros(5, np.float32))
    gated.gate.set()
    assert client.wait_ready(10)["ready"] is True
    assert client.act("behavior_cloning", np.zeros(5, np.float32)).ok


def test_expired_requests_are_answered_without_running(start_node, connect, checkpoint_a):
    gated = GatedForward(checkpoint_a)
    node = start_node(engine=gated.engine, inline_lone_requests=False)
    client = connect(node.endpoint)
    ctx = random_context("behavior_cloning", np.random.default_rng(4))
    gated.close()
    blocking = _submit(client, ctx)
    assert wait_for(lambda: gated.calls > 0)
    calls = gated.calls
    late = _submit(client, ctx, deadline_ms=1)
    on_arrival = _submit(client, ctx, deadline_ms=0)
    assert wait_for(lambda: node.queue_depth == 1)
    time.sleep(0.005)  # let the 1 ms budget run out while the batch ahead is blocked
    gated.gate.set()
    assert client.poll(blocking, 5000).ok
    for rid in (late, on_arrival):
        reply = client.poll(rid, 5000)
        assert reply.status == wire.STATUS_EXPIRED and reply.error_code == wire.EXPIRED
        assert reply.model_id == "tiny-a"
    assert gated.calls == calls  # the expired one never ran
    assert client.stats()["counters"]["expired"] == 2


def test_full_queue_answers_overloaded(start_node, connect, checkpoint_a):
    gated = GatedForward(checkpoint_a)
    node = start_node(engine=gated.engine, max_queue=2, inline_lone_requests=False)
    client = connect(node.endpoint)
    ctx = random_context("behavior_cloning", np.random.default_rng(5))
    gated.close()
    rids = [_submit(client, ctx)]
    assert wait_for(lambda: gated.calls > 0 and node.queue_depth == 0)
    rids += [_submit(client, ctx) for _ in range(3)]
    assert client.poll(rids[3], 5000).error_code == wire.OVERLOADED
    gated.gate.set()
    assert all(client.poll(r, 5000).ok for r in rids[:3])


def _raw_dealer(context: zmq.Context, endpoint: str) -> zmq.Socket:
    socket = context.socket(zmq.DEALER)
    socket.linger = 0
    socket.rcvhwm = socket.sndhwm = 0
    socket.rcvtimeo = 5000
    socket.connect(endpoint)
    return socket


def _header(**fields) -> bytes:
    return wire.encode({"id": 1, "type": "act", "mode": "behavior_cloning", **fields})[0]


def test_bad_requests_get_error_replies_and_the_node_keeps_serving(
    start_node, connect, zmq_context
):
    node = start_node(max_message_bytes=4096)
    raw = _raw_dealer(zmq_context, node.endpoint)
    state = np.zeros(5, np.float32)
    good = wire.encode({"id": 1, "type": "act", "mode": "behavior_cloning"}, {"state": state})
    cases = [
        ([b"\xff\xfe garbage"], wire.BAD_MESSAGE),
        ([wire.encode({"id": 1, "type": "dance"})[0]], wire.UNKNOWN_TYPE),
        ([b'{"v": 0, "id": 1, "type": "act"}'], wire.BAD_VERSION),
        ([good[0]], wire.BAD_MESSAGE),  # array frame missing
        ([*good, b"extra"], wire.BAD_MESSAGE),
        (
            wire.encode({"id": 1, "type": "act", "mode": "flying"}, {"state": state}),
            wire.BAD_REQUEST,
        ),
        (wire.encode({"id": 1, "type": "act"}, {"state": np.zeros(6, np.float32)}), wire.BAD_SHAPE),
        ([good[0], np.full(5, np.nan, np.float32).tobytes()], wire.NOT_FINITE),
        ([good[0], b"\0" * 8000], wire.TOO_LARGE),
        ([good[0].replace(b"float32", b"int64__"), b"\0" * 20], wire.BAD_DTYPE),
        ([], wire.BAD_MESSAGE),
    ]
    for frames, code in cases:
        raw.send_multipart([b"", *frames])
        reply = wire.decode_frames(raw.recv_multipart())
        assert reply.header["status"] == wire.STATUS_ERROR, frames
        assert reply.header["error"]["code"] == code, (frames, reply.header)
    raw.send_multipart([b"", *good])
    reply = wire.decode_frames(raw.recv_multipart())
    assert reply.header["status"] == wire.STATUS_OK and reply.header["id"] == 1
    assert connect(node.endpoint).health()["ready"]


def _fuzz_message(rng: np.random.Generator, i: int) -> list[bytes]:
    state = np.zeros(5, np.float32)
    kind = i % 12
    header = {"id": i, "type": "act", "mode": "behavior_cloning"}
    if kind == 0:
        return [b"", *[rng.bytes(int(rng.integers(1, 200))) for _ in range(rng.integers(1, 4))]]
    if kind == 1:
        return [b"", b"{" + rng.bytes(20) + b"}"]
    if kind == 2:
        return [b"", wire.encode(header)[0]]  # no frames (state missing)
    if kind == 3:
        return [b"", *wire.encode(header, {"state": state}), b"extra"]
    if kind == 4:
        return [
            b"",
            wire.encode(header, {"state": state})[0].replace(b"float32", b"uint8__"),
            b"\0" * 5,
        ]
    if kind == 5:
        return [b"", *wire.encode(header, {"state": np.zeros((2, 3), np.float32)})]
    if kind == 6:
        return [b"", wire.encode(header, {"state": state})[0], np.full(5, np.inf, "<f4").tobytes()]
    if kind == 7:
        return [b"", wire.encode(header, {"state": state})[0], b"\0" * 5000]
    if kind == 8:
        return [b"", *wire.encode({**header, "type": rng.bytes(4).hex()}, {"state": state})]
    if kind == 9:
        return [b"", *wire.encode({**header, "mode": "x" * 30}, {"state": state})]
    if kind == 10:
        return [b"", b'{"v": 99, "id": %d, "type": "act"}' % i]
    return [rng.bytes(int(rng.integers(1, 50)))]  # no delimiter at all


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
def test_ten_thousand_malformed_messages_leave_the_node_serving(start_node, connect, zmq_context):
    node = start_node(max_message_bytes=4096)
    raw = _raw_dealer(zmq_context, node.endpoint)
    rng = np.random.default_rng(6)
    replies, rss = [], []
    for window in range(20):
        for i in range(window * 500, (window + 1) * 500):
            raw.send_multipart(_fuzz_message(rng, i))
        for _ in range(500):
            replies.append(wire.decode_frames(raw.recv_multipart()).header)
        if window in (3, 19):
            rss.append(_rss_mb())
    assert len(replies) == 10_000
    assert all(h["status"] == wire.STATUS_ERROR for h in replies)
    with_id = [h for h in replies if h["id"] is not None]
    assert len(with_id) > 4000 and all(isinstance(h["id"], int) for h in with_id)
    assert rss[1] - rss[0] < 20, f"RSS grew from {rss[0]:.1f} MB to {rss[1]:.1f} MB"
    client = connect(node.endpoint)
    assert client.act("behavior_cloning", np.zeros(5, np.float32)).ok
    assert client.stats()["counters"]["errors"] == 10_000


@pytest.mark.slow
def test_eight_clients_two_thousand_requests_each_none_lost_or_mismatched(
    start_node, connect, checkpoint_a
):
    node = start_node(max_batch=32, max_wait_us=500)
    direct = direct_predictor(checkpoint_a)
    rng = np.random.default_rng(7)
    failures: list[str] = []

    def run_client(index: int, client) -> None:
        contexts = [random_context(MODES[(index + j) % 6], rng, history=j % 3) for j in range(8)]
        expected = [direct.predict(c).action for c in contexts]
        outstanding: dict[int, int] = {}
        sent = done = 0
        while done < 2000:
            while sent < 2000 and len(outstanding) < 32:
                outstanding[_submit(client, contexts[sent % 8])] = sent % 8
                sent += 1
            rid = next(iter(outstanding))
            reply = client.poll(rid, 10_000)
            if reply is None or not reply.ok or reply.request_id != rid:
                failures.append(f"client {index} request {rid}: {reply and reply.header}")
                return
            if not np.allclose(reply.action, expected[outstanding.pop(rid)], atol=1e-4):
                failures.append(f"client {index} request {rid}: wrong action")
                return
            done += 1

    clients = [connect(node.endpoint, timeout_ms=10_000) for _ in range(8)]
    threads = [threading.Thread(target=run_client, args=(i, c)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures[:3]
    stats = clients[0].stats()
    assert stats["counters"]["ok"] == 16_000 and stats["counters"]["errors"] == 0
    assert all(c.late_replies == 0 for c in clients)


def test_reload_swaps_models_without_dropping_queued_requests(
    start_node, connect, checkpoint_a, checkpoint_b
):
    gated = GatedForward(checkpoint_a)
    node = start_node(
        engine=gated.engine, allow_reload=str(checkpoint_b.parent), inline_lone_requests=False
    )
    client = connect(node.endpoint, timeout_ms=20_000)
    direct = {"tiny-a": direct_predictor(checkpoint_a), "tiny-b": direct_predictor(checkpoint_b)}
    rng = np.random.default_rng(8)
    contexts = [random_context(MODES[i % 6], rng) for i in range(6)]
    gated.close()
    rids = [_submit(client, contexts[0])]
    assert wait_for(lambda: gated.calls > 0 and node.queue_depth == 0)
    rids += [_submit(client, c) for c in contexts[1:]]
    # tiny-b is another model of the same dims (its own normaliser): forced
    reload_rid = client.send({"type": "reload", "checkpoint": str(checkpoint_b), "force": True})
    reload_reply = client.poll(reload_rid, 20_000)
    assert reload_reply.ok and reload_reply.body["previous_model_id"] == "tiny-a"
    assert reload_reply.model_id == "tiny-b"
    gated.gate.set()
    replies = [client.poll(r, 10_000) for r in rids]
    assert [r.model_id for r in replies] == ["tiny-a"] + ["tiny-b"] * 5
    for reply, ctx in zip(replies, contexts):
        _assert_matches(reply, direct[reply.model_id].predict(ctx))
    assert client.metadata()["model_id"] == "tiny-b"


def test_failed_reloads_keep_the_old_model(start_node, connect, tmp_path):
    node = start_node(allow_reload=str(tmp_path))
    client = connect(node.endpoint, timeout_ms=20_000)
    with pytest.raises(NodeError, match="reload_failed"):
        client.reload(str(tmp_path / "missing"))
    other = make_checkpoint(
        tmp_path / "wide", 3, "wide", DataSpec({"states": 6, "actions": 2, "returns": 1}, 4)
    )
    with pytest.raises(NodeError, match="spec differs"):
        client.reload(str(other))
    reply = client.act("behavior_cloning", np.zeros(5, np.float32))
    assert reply.model_id == "tiny-a"
    assert client.stats()["errors"]["reload_failed"] == 2


def test_reload_by_signal_path_rereads_the_checkpoint(start_node, connect, checkpoint_b):
    node = start_node()
    client = connect(node.endpoint)
    node.request_reload(str(checkpoint_b), force=True)
    assert wait_for(lambda: client.health()["model_id"] == "tiny-b")


def test_non_loopback_bind_needs_curve_keys_or_insecure():
    with pytest.raises(ConfigError, match="not loopback"):
        ServeConfig(bind="tcp://0.0.0.0:5555")
    with pytest.raises(ConfigError, match="not loopback"):
        ServeConfig(bind="tcp://*:5555")
    assert ServeConfig(bind="tcp://0.0.0.0:5555", insecure=True).insecure
    assert ServeConfig(bind="tcp://10.1.2.3:5555", curve_secret_key="s", curve_allowed_clients="d")
    with pytest.raises(ConfigError, match="go together"):
        ServeConfig(curve_secret_key="s")


def test_a_raw_client_written_from_the_protocol_page_works(start_node, zmq_context, checkpoint_a):
    import json

    node = start_node()
    sock = _raw_dealer(zmq_context, node.endpoint)
    state = np.arange(5, dtype="<f4")
    header = {
        "v": 1,
        "id": "tick-1",
        "type": "act",
        "mode": "return_conditioned",
        "return_target": 2.0,
        "deadline_ms": 5000,
        "arrays": [{"name": "state", "dtype": "float32", "shape": [5]}],
    }
    sock.send_multipart([b"", json.dumps(header).encode(), state.tobytes()])
    empty, head, *frames = sock.recv_multipart()
    reply = json.loads(head)
    assert empty == b"" and reply["id"] == "tick-1" and reply["status"] == "ok"
    arrays = {
        d["name"]: np.frombuffer(f, "<f4").reshape(d["shape"])
        for d, f in zip(reply["arrays"], frames)
    }
    expected = direct_predictor(checkpoint_a).predict(
        mode="return_conditioned", state=state, return_target=2.0
    )
    np.testing.assert_allclose(arrays["action"], expected.action, atol=1e-5)
    assert arrays["action_chunk"].shape == (4, 2) and arrays["next_states"].shape == (3, 5)
