from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import zmq

from mtm_robot.serving.security import generate_keypair
from mtm_robot_client import CurveClient, NodeClient, NodeTimeoutError
from mtm_robot_client import protocol as wire

from .conftest import LOOPBACK, direct_predictor, random_context
from .test_server import GatedForward, _submit


def test_client_imports_neither_torch_nor_the_model():
    code = textwrap.dedent(
        """
        import sys
        import mtm_robot_client
        heavy = [m for m in sys.modules
                 if m.split(".")[0] in ("torch", "onnxruntime", "onnx")
                 or m.startswith(("mtm_robot.model", "mtm_robot.inference"))]
        assert not heavy, heavy
        print("light")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "light"


def test_timeout_raises_and_reconnects(zmq_context):
    silent = zmq_context.socket(zmq.ROUTER)  # accepts requests, never answers
    silent.linger = 0
    port = silent.bind_to_random_port("tcp://127.0.0.1")
    client = NodeClient(f"tcp://127.0.0.1:{port}", timeout_ms=50, context=zmq_context)
    assert client.wait_connected(5)
    with pytest.raises(NodeTimeoutError):
        client.act("behavior_cloning", np.zeros(5, np.float32))
    assert client.reconnects == 1 and client.outstanding == 0
    assert silent.poll(1000)  # the request did reach the node
    client.close()
    silent.close()


def test_sends_fail_at_once_without_a_connection_and_blocking_calls_wait_for_one(zmq_context):
    client = NodeClient("tcp://127.0.0.1:9", timeout_ms=30, context=zmq_context)  # nobody there
    with pytest.raises(NodeTimeoutError, match="not sent"):
        client.submit("behavior_cloning", np.zeros(5, np.float32))
    with pytest.raises(NodeTimeoutError, match="no connection"):
        client.act("behavior_cloning", np.zeros(5, np.float32))
    assert client.outstanding == 0
    client.close()


def test_late_reply_is_dropped_never_taken_for_the_current_one(start_node, connect, checkpoint_a):
    gated = GatedForward(checkpoint_a)
    node = start_node(engine=gated.engine)
    client = connect(node.endpoint)
    rng = np.random.default_rng(9)
    old, new = random_context("behavior_cloning", rng), random_context("behavior_cloning", rng)
    gated.close()
    stale = _submit(client, old)
    assert client.poll(stale, 20) is None  # the controller's budget runs out
    client.abandon(stale)
    gated.gate.set()
    current = _submit(client, new)
    reply = client.poll(current, 5000)
    assert reply.request_id == current
    np.testing.assert_allclose(
        reply.action, direct_predictor(checkpoint_a).predict(new).action, atol=1e-5
    )
    assert client.late_replies == 1  # the stale reply came first on the connection: dropped
    with pytest.raises(KeyError):
        client.poll(stale)


def test_client_survives_the_node_being_killed_and_restarted(start_node, zmq_context):
    first = start_node()
    port = first.endpoint.rsplit(":", 1)[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    client = NodeClient(endpoint, timeout_ms=300, context=zmq_context)
    state = np.zeros(5, np.float32)
    assert client.act("behavior_cloning", state).model_id == "tiny-a"
    first.close()
    with pytest.raises(NodeTimeoutError):
        client.act("behavior_cloning", state)
    second = start_node(bind=endpoint)
    assert second.endpoint == endpoint
    client.wait_ready(timeout_s=10)
    assert client.act("behavior_cloning", state).ok
    assert client.bad_replies == 0 and client.late_replies == 0
    client.close()


def test_curve_node_refuses_clients_without_an_allowed_key(start_node, zmq_context, tmp_path):
    _, node_secret = generate_keypair(tmp_path / "node", "node")
    allowed_public, allowed_secret = generate_keypair(tmp_path / "allowed", "robot")
    _, stranger_secret = generate_keypair(tmp_path / "stranger", "stranger")
    node = start_node(
        curve_secret_key=str(node_secret), curve_allowed_clients=str(allowed_public.parent)
    )
    node_public = str(tmp_path / "node" / "node.key")
    state = np.zeros(5, np.float32)

    def client(secret=None) -> NodeClient:
        curve = CurveClient(str(secret), node_public) if secret else None
        return NodeClient(node.endpoint, timeout_ms=300, curve=curve, context=zmq_context)

    good = client(allowed_secret)
    assert good.act("behavior_cloning", state).ok
    for bad in (client(stranger_secret), client(None)):
        with pytest.raises(NodeTimeoutError):
            bad.act("behavior_cloning", state)
        bad.close()
    assert good.act("behavior_cloning", state).ok  # still serving the allowed one
    good.close()


def test_non_ok_replies_carry_code_and_message(start_node, connect):
    client = connect(start_node().endpoint)
    reply = client.call({"type": "act", "mode": "behavior_cloning"}, {"state": np.ones(3)})
    assert reply.status == wire.STATUS_ERROR and reply.error_code == wire.BAD_SHAPE
    assert "expected shape [5]" in reply.error_message


def test_default_bind_is_loopback():
    from mtm_robot.serving.security import is_loopback
    from mtm_robot.serving.server import ServeConfig

    assert is_loopback(ServeConfig().bind)
    assert is_loopback("tcp://[::1]:5") and is_loopback("ipc:///tmp/x") and is_loopback(LOOPBACK)
    assert not is_loopback("tcp://0.0.0.0:5") and not is_loopback("tcp://eth0:5")


def test_error_replies_raise_the_exception_of_their_code_and_poll_never_raises(start_node, connect):
    import mtm_robot_client as mc

    client = connect(start_node().endpoint)
    state = np.zeros(5, np.float32)
    cases = [
        (mc.BadShape, lambda: client.act("behavior_cloning", np.ones(3, np.float32))),
        (mc.NotFinite, lambda: client.act("behavior_cloning", np.full(5, np.nan, np.float32))),
        (mc.OutOfRange, lambda: client.act("behavior_cloning", np.full(5, 1e30, np.float32))),
        (mc.BadRequest, lambda: client.act("no_such_mode", state)),
        (mc.Expired, lambda: client.act("behavior_cloning", state, deadline_ms=0)),
        (mc.Forbidden, lambda: client.reload()),  # remote reload is off by default
    ]
    for cls, call in cases:
        with pytest.raises(cls) as info:
            call()
        assert info.value.code == cls.code and info.value.reply.request_id is not None
    # the controller's path: submit/poll hand the error reply back, never raise
    rid = client.submit("behavior_cloning", np.ones(3, np.float32))
    reply = client.poll(rid, 3000)
    assert reply is not None and not reply.ok and reply.error_code == wire.BAD_SHAPE
    assert client.act("behavior_cloning", state).ok  # and the node keeps serving


@pytest.mark.slow
def test_the_every_mode_example_passes_against_the_shipped_model(start_node, capsys):
    """client/examples/every_mode.py (what scripts/check_client_alone.sh runs from a
    client-only venv), in process against the shipped walker model."""
    import runpy
    from pathlib import Path

    example = Path(__file__).parents[2] / "client" / "examples" / "every_mode.py"
    main = runpy.run_path(str(example))["main"]
    node = start_node(checkpoint="default")
    assert main(["--endpoint", node.endpoint, "--bounds", "-1", "1"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and out.count("reply shapes") == 6
    assert "raises Forbidden" in out and out.rstrip().endswith("every check passed")


@pytest.mark.slow
def test_the_installed_alone_example_of_the_protocol_page_runs(start_node, capsys):
    """docs/protocol.md section 9, "The Python client, installed alone", as written."""
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()
    section = doc[doc.index("### The Python client, installed alone") :]
    start = section.index("```python\n") + 10
    code = section[start : section.index("\n```", start)]
    node = start_node(checkpoint="default")
    code = code.replace("tcp://127.0.0.1:5555", node.endpoint)
    code = code.replace("timeout_ms=100", "timeout_ms=10_000").replace("=20,", "=10_000,")
    namespace: dict = {}
    exec(compile(code, "docs/protocol.md#9-alone", "exec"), namespace)
    assert capsys.readouterr().out == ""  # neither refused nor timed out
    assert namespace["action"].shape == (6,) and np.isfinite(namespace["action"]).all()
