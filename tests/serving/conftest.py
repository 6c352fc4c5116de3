"""Serving fixtures: tiny checkpoints on disk, nodes on random loopback ports, clients."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import zmq

from mtm_robot.data.normalize import Normalizer
from mtm_robot.inference import Context, Predictor, torch_forward
from mtm_robot.model.mtm import MTM, DataSpec, ModelConfig
from mtm_robot.serving.backends import BackendConfig
from mtm_robot.serving.server import InferenceNode, ServeConfig
from mtm_robot.training.checkpoint import load_checkpoint, save_checkpoint
from mtm_robot_client import NodeClient
from mtm_robot_client.modes import ARRAYS, MODES

SPEC = DataSpec({"states": 5, "actions": 2, "returns": 1}, segment_length=4)
LOOPBACK = "tcp://127.0.0.1:*"


def make_checkpoint(directory: Path, seed: int, model_id: str, spec: DataSpec = SPEC) -> Path:
    """A random width-32 one-layer MTM with non-trivial embeddings and normaliser."""
    torch.manual_seed(seed)
    model = MTM(
        spec, ModelConfig(width=32, encoder_layers=1, decoder_layers=1, heads=2, dropout=0.0)
    )
    with torch.no_grad():
        for p in (model.enc_modality, model.dec_modality, model.mask_token):
            p.normal_()
    rng = np.random.default_rng(seed)
    data = {n: rng.normal(1.0, 2.0, size=(64, d)) for n, d in spec.modalities.items()}
    save_checkpoint(directory, model.eval(), Normalizer.fit(data), {"model_id": model_id})
    return directory


@pytest.fixture(scope="session")
def checkpoint_a(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-a", 1, "tiny-a")


@pytest.fixture(scope="session")
def checkpoint_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny-b", 2, "tiny-b")


def direct_predictor(path: Path) -> Predictor:
    checkpoint = load_checkpoint(path)
    return Predictor(checkpoint.spec, checkpoint.normalizer, torch_forward(checkpoint.model))


def random_context(mode: str, rng: np.random.Generator, history: int = 2) -> Context:
    ds, da = SPEC.modalities["states"], SPEC.modalities["actions"]
    state = rng.normal(1.0, 2.0, ds).astype(np.float32)
    ctx = Context(
        mode=mode,
        state=state,
        history_states=rng.normal(1.0, 2.0, (history, ds)).astype(np.float32),
        history_actions=rng.normal(1.0, 2.0, (history, da)).astype(np.float32),
    )
    description = MODES[mode]
    if description.needs_return_target:
        ctx.return_target = float(rng.normal(1.0, 2.0))
    for name in description.arrays:  # one row (or one vector) of the array's modality
        array = ARRAYS[name]
        dim = SPEC.modalities[array.modality]
        setattr(ctx, name, rng.normal(1.0, 2.0, (1, dim) if array.rows else dim).astype(np.float32))
    return ctx


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


NodeFactory = Callable[..., InferenceNode]


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def start_node(checkpoint_a: Path, zmq_context: zmq.Context) -> Iterator[NodeFactory]:
    """``start_node(**ServeConfig overrides, engine=None, max_batch=8)`` -> a ready node."""
    nodes: list[InferenceNode] = []

    def start(
        engine: object = None,
        max_batch: int = 8,
        backend: str = "torch",
        wait: bool = True,
        **overrides: object,
    ) -> InferenceNode:
        fields: dict[str, object] = {"checkpoint": str(checkpoint_a), "bind": LOOPBACK}
        fields.update(overrides)
        config = ServeConfig(backend=BackendConfig(backend=backend, max_batch=max_batch), **fields)  # type: ignore[arg-type]
        node = InferenceNode(config, context=zmq_context, engine=engine)  # type: ignore[arg-type]
        node.run_in_thread()
        nodes.append(node)
        if wait:
            assert node.wait_ready(30)
        return node

    yield start
    for node in nodes:
        node.close()


@pytest.fixture
def connect(zmq_context: zmq.Context) -> Iterator[Callable[..., NodeClient]]:
    clients: list[NodeClient] = []

    def make(endpoint: str, timeout_ms: float = 3000, **kwargs: object) -> NodeClient:
        client = NodeClient(endpoint, timeout_ms=timeout_ms, context=zmq_context, **kwargs)  # type: ignore[arg-type]
        clients.append(client)
        client.wait_connected(5)
        return client

    yield make
    for client in clients:
        client.close()
