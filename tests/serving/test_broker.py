from __future__ import annotations

import numpy as np
import pytest

from mtm_robot.errors import ConfigError
from mtm_robot.serving.broker import Broker

from .conftest import LOOPBACK, direct_predictor, random_context


def test_two_nodes_behind_a_broker_share_the_requests(
    start_node, connect, zmq_context, checkpoint_a, checkpoint_b
):
    node_a = start_node(checkpoint=str(checkpoint_a))
    node_b = start_node(checkpoint=str(checkpoint_b))
    broker = Broker(LOOPBACK, [node_a.endpoint, node_b.endpoint], context=zmq_context)
    try:
        client = connect(broker.start())
        direct = {
            "tiny-a": direct_predictor(checkpoint_a),
            "tiny-b": direct_predictor(checkpoint_b),
        }
        rng = np.random.default_rng(10)
        contexts = [random_context("behavior_cloning", rng) for _ in range(40)]
        rids = [
            client.send(
                {"type": "act", "mode": "behavior_cloning"},
                {
                    "state": c.state,
                    "history_states": c.history_states,
                    "history_actions": c.history_actions,
                },
            )
            for c in contexts
        ]
        served = []
        for rid, ctx in zip(rids, contexts):
            reply = client.poll(rid, 5000)
            assert reply is not None and reply.ok and reply.request_id == rid
            expected = direct[reply.model_id].predict(ctx).action
            np.testing.assert_allclose(reply.action, expected, atol=1e-5)
            served.append(reply.model_id)
        assert served.count("tiny-a") == served.count("tiny-b") == 20  # round-robin
        assert client.late_replies == 0
    finally:
        broker.stop()


def test_broker_frontend_must_be_loopback_unless_insecure():
    with pytest.raises(ConfigError, match="not loopback"):
        Broker("tcp://0.0.0.0:5000", ["tcp://127.0.0.1:5001"])
    with pytest.raises(ConfigError, match="at least one node"):
        Broker(LOOPBACK, [])


def test_curve_end_to_end_through_a_broker(start_node, zmq_context, tmp_path):
    from mtm_robot.serving.security import CurveServer, generate_keypair
    from mtm_robot_client import CurveClient, NodeClient, NodeTimeoutError

    _, node_secret = generate_keypair(tmp_path / "node", "node")
    broker_public, broker_secret = generate_keypair(tmp_path / "broker-as-client", "broker")
    _, front_secret = generate_keypair(tmp_path / "front", "front")
    robot_public, robot_secret = generate_keypair(tmp_path / "robots", "robot")
    _, stranger_secret = generate_keypair(tmp_path / "strangers", "stranger")
    node = start_node(
        curve_secret_key=str(node_secret), curve_allowed_clients=str(broker_public.parent)
    )
    broker = Broker(  # its own ZeroMQ context: one ZAP authenticator per context
        LOOPBACK,
        [node.endpoint],
        curve=CurveServer(str(front_secret), str(robot_public.parent)),
        node_curve=CurveClient(str(broker_secret), str(tmp_path / "node" / "node.key")),
    )
    endpoint = broker.start()
    try:
        front_public = str(tmp_path / "front" / "front.key")
        state = np.zeros(5, np.float32)
        robot = NodeClient(
            endpoint,
            timeout_ms=2000,
            context=zmq_context,
            curve=CurveClient(str(robot_secret), front_public),
        )
        assert robot.act("behavior_cloning", state).model_id == "tiny-a"
        stranger = NodeClient(
            endpoint,
            timeout_ms=300,
            context=zmq_context,
            curve=CurveClient(str(stranger_secret), front_public),
        )
        with pytest.raises(NodeTimeoutError):
            stranger.act("behavior_cloning", state)
        robot.close()
        stranger.close()
    finally:
        broker.stop()
