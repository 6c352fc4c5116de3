"""Issue 18: the batch-1 request path without needless work, batching kept under load.

A lone request runs on the receive thread (no hand-off to the inference thread and back);
concurrent clients are still batched together; array values are checked in one pass that
still tells a non-finite value from an out-of-range one; the client waits on one poller for
its socket's lifetime.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from mtm_robot.inference import Predictor
from mtm_robot.serving.backends import Engine
from mtm_robot.serving.contexts import context_from_message
from mtm_robot.training.checkpoint import load_checkpoint
from mtm_robot_client import protocol as wire

from .conftest import SPEC, random_context


def _slow_engine(path, delay_s: float) -> Engine:
    """The tiny model with a forward that takes at least ``delay_s`` (requests pile up)."""
    from mtm_robot.inference import torch_forward

    checkpoint = load_checkpoint(path)
    inner = torch_forward(checkpoint.model)

    def forward(inputs, masks):
        time.sleep(delay_s)
        return inner(inputs, masks)

    predictor = Predictor(checkpoint.spec, checkpoint.normalizer, forward)
    return Engine(predictor, checkpoint, "torch", {})


def test_a_lone_request_runs_inline_and_answers_the_same(start_node, connect, checkpoint_a):
    node = start_node()
    client = connect(node.endpoint)
    rng = np.random.default_rng(1)
    from .conftest import direct_predictor

    direct = direct_predictor(checkpoint_a)
    for _ in range(5):
        ctx = random_context("return_conditioned", rng)
        reply = client.act(
            ctx.mode,
            ctx.state,
            history_states=ctx.history_states,
            history_actions=ctx.history_actions,
            return_target=ctx.return_target,
        )
        np.testing.assert_allclose(reply.action, direct.predict(ctx).action, atol=1e-5)
        assert reply.timings_us["batch"] == 1
    stats = client.stats()
    assert stats["counters"]["inline"] == 5 and stats["counters"]["ok"] == 5


def test_inline_can_be_turned_off(start_node, connect):
    client = connect(start_node(inline_lone_requests=False).endpoint)
    for _ in range(3):
        assert client.act("behavior_cloning", np.zeros(5, np.float32)).ok
    stats = client.stats()
    assert stats["counters"]["inline"] == 0 and stats["counters"]["ok"] == 3


@pytest.mark.slow
def test_eight_concurrent_clients_are_still_batched(start_node, connect, checkpoint_a):
    node = start_node(engine=_slow_engine(checkpoint_a, 0.003), max_batch=8)
    rounds, errors = 25, []

    def client_loop(seed: int) -> None:
        client = connect(node.endpoint, timeout_ms=10_000)
        rng = np.random.default_rng(seed)
        try:
            for _ in range(rounds):
                ctx = random_context("behavior_cloning", rng)
                if not client.act(ctx.mode, ctx.state).ok:
                    errors.append("not ok")
        except Exception as exc:  # reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    stats = connect(node.endpoint).stats()
    assert stats["counters"]["ok"] == 8 * rounds
    batch = stats["batch"]
    assert batch["mean"] > 1.0, batch  # cross-client batching kept while some ran inline
    assert batch["max"] > 1 and stats["counters"]["inline"] < 8 * rounds


def _message(arrays: dict[str, np.ndarray], **header: object) -> wire.Message:
    frames = wire.encode({"id": 1, "type": "act", "mode": "behavior_cloning", **header}, arrays)
    return wire.decode(frames, check_finite=False)  # as the node decodes


@pytest.mark.parametrize(
    ("value", "code"),
    [
        (np.array([0, 0, np.nan, 0, 0], "<f4"), wire.NOT_FINITE),
        (np.array([0, 0, np.inf, 0, 0], "<f4"), wire.NOT_FINITE),
        (np.array([0, 0, -np.inf, 0, 0], "<f8"), wire.NOT_FINITE),
        (np.array([0, 0, np.nan, 0, 1e300], "<f8"), wire.NOT_FINITE),
        (np.array([0, 0, 1e300, 0, 0], "<f8"), wire.OUT_OF_RANGE),
        (np.array([0, 0, 1e9, 0, 0], "<f4"), wire.OUT_OF_RANGE),
    ],
)
def test_one_pass_tells_non_finite_from_out_of_range(checkpoint_a, value, code):
    checkpoint = load_checkpoint(checkpoint_a)
    for normalizer in (checkpoint.normalizer, None):
        if normalizer is None and code == wire.OUT_OF_RANGE and value.dtype == np.float32:
            continue  # without training statistics only float32 overflow is out of range
        with pytest.raises(wire.ProtocolError) as info:
            context_from_message(
                _message({"state": value}), SPEC, ("behavior_cloning",), normalizer
            )
        assert info.value.code == code, (value, normalizer)
    history = {"state": np.zeros(5, "<f4"), "history_states": np.zeros((2, 5), "<f4")}
    history["history_actions"] = np.array([[0, 0], [np.nan, 0]], "<f4")
    with pytest.raises(wire.ProtocolError) as info:
        context_from_message(_message(history), SPEC, ("behavior_cloning",), checkpoint.normalizer)
    assert info.value.code == wire.NOT_FINITE and "history_actions" in info.value.message


def test_headers_are_checked_for_non_finite_numbers_only_once_parsed():
    ok = b'{"v":1,"id":1,"type":"health","x":[1e308,-1.5,' + b"9" * 300 + b"]}"
    assert wire.decode([ok]).header["x"][0] == 1e308
    for literal in (b"1e309", b"-1e400", b"NaN", b"-Infinity", b"9" * 310):
        text = b'{"v":1,"id":1,"type":"health","x":[0,{"y":' + literal + b"}]}"
        with pytest.raises(wire.ProtocolError, match=r"header\.x\[1\]\.y") as info:
            wire.decode([text])
        assert info.value.code == wire.NOT_FINITE and info.value.request_id == 1


def test_the_client_waits_on_one_poller(start_node, connect, monkeypatch):
    client = connect(start_node().endpoint)
    client.act("behavior_cloning", np.zeros(5, np.float32))
    made = []
    original = zmq.Poller.__init__

    def counting(self, *args, **kwargs):
        made.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(zmq.Poller, "__init__", counting)
    for _ in range(10):
        assert client.act("behavior_cloning", np.zeros(5, np.float32)).ok
    rid = client.submit("behavior_cloning", np.zeros(5, np.float32))
    assert client.poll(rid, 5000).ok
    assert made == []  # not one per call (Socket.poll builds a Poller each time)
