from __future__ import annotations

import numpy as np
import pytest
import torch

from mtm_robot.errors import ConfigError
from mtm_robot.export.onnx import export_onnx, read_onnx_metadata
from mtm_robot.inference import Predictor, torch_forward
from mtm_robot.model import masks as mask_lib
from mtm_robot.serving.backends import BackendConfig, OnnxForward, load_engine
from mtm_robot.training.checkpoint import load_checkpoint
from mtm_robot_client.modes import MODES as MODE_TABLE

from .conftest import SPEC, random_context

MODES = tuple(MODE_TABLE)  # every mode a request can ask for


@pytest.fixture(scope="module")
def exported(checkpoint_a, tmp_path_factory):
    checkpoint = load_checkpoint(checkpoint_a)
    path = export_onnx(checkpoint, tmp_path_factory.mktemp("onnx") / "model.onnx")
    return checkpoint, path


def test_export_records_provenance(exported):
    checkpoint, path = exported
    meta = read_onnx_metadata(path)
    assert meta["model_id"] == "tiny-a" and meta["weights_sha256"] == checkpoint.weights_sha256
    assert meta["data_spec"] == {"modalities": dict(SPEC.modalities), "segment_length": 4}


@pytest.mark.parametrize("mode", MODES)
def test_onnx_matches_torch_in_every_mode(exported, mode):
    checkpoint, path = exported
    names = list(SPEC.modalities)
    onnx_forward = OnnxForward(path, names)
    torch_fn = torch_forward(checkpoint.model)
    by_onnx = Predictor(SPEC, checkpoint.normalizer, onnx_forward)
    by_torch = Predictor(SPEC, checkpoint.normalizer, torch_fn)
    rng = np.random.default_rng(11)
    contexts = [random_context(mode, rng, history=h) for h in (0, 1, 2)] * 3
    for a, b in zip(by_onnx.predict_batch(contexts), by_torch.predict_batch(contexts)):
        np.testing.assert_allclose(a.action_chunk, b.action_chunk, atol=1e-4, rtol=0)
        np.testing.assert_allclose(a.next_states, b.next_states, atol=1e-4, rtol=0)
    # the raw graph on random normalised inputs, with the mask this mode uses at each history
    for history in (0, 1, 2):
        for mask in mask_lib.mode_masks(mode, names, 4, history):  # every forward's mask
            _check_graph(onnx_forward, torch_fn, mask, rng)


def _check_graph(onnx_forward, torch_fn, mask, rng) -> None:
    batch = 5
    masks = mask_lib.stack_masks([mask] * batch)
    inputs = {
        n: rng.normal(size=(batch, 4, d)).astype(np.float32) for n, d in SPEC.modalities.items()
    }
    got, want = onnx_forward(inputs, masks), torch_fn(inputs, masks)
    for n in SPEC.modalities:
        assert np.abs(got[n] - want[n]).max() <= 1e-4


def test_onnx_engine_checks_the_graph_belongs_to_the_checkpoint(exported, checkpoint_b):
    _, path = exported
    with pytest.raises(ConfigError, match="re-export"):
        load_engine(checkpoint_b, BackendConfig(backend="onnx", onnx_path=str(path)), warm=False)


def test_onnx_backend_serves_mixed_batches(exported, checkpoint_a):
    _, path = exported
    engine = load_engine(
        checkpoint_a, BackendConfig(backend="onnx", onnx_path=str(path), max_batch=4)
    )
    assert engine.description["providers"] == ["CPUExecutionProvider"]
    reference = Predictor(
        SPEC, engine.checkpoint.normalizer, torch_forward(engine.checkpoint.model)
    )
    contexts = [random_context(m, np.random.default_rng(12)) for m in MODES]
    for a, b in zip(engine.predictor.predict_batch(contexts), reference.predict_batch(contexts)):
        np.testing.assert_allclose(a.action, b.action, atol=1e-4, rtol=0)


def test_cuda_requests_fail_fast_without_a_gpu(checkpoint_a):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ConfigError, match="cuda"):
        load_engine(checkpoint_a, BackendConfig(device="cuda"), warm=False)


def test_int8_engine_is_close_but_not_exact(checkpoint_a):
    engine = load_engine(checkpoint_a, BackendConfig(backend="onnx", quantize="int8", max_batch=2))
    assert engine.description["quantize"] == "int8"
    reference = Predictor(
        SPEC, engine.checkpoint.normalizer, torch_forward(engine.checkpoint.model)
    )
    contexts = [random_context(m, np.random.default_rng(14)) for m in MODES]
    scale = max(float(np.abs(b.action).max()) for b in reference.predict_batch(contexts))
    for a, b in zip(engine.predictor.predict_batch(contexts), reference.predict_batch(contexts)):
        assert np.abs(a.action - b.action).max() < 0.1 * scale
    with pytest.raises(ConfigError, match="onnx backend only"):
        BackendConfig(backend="torch", quantize="int8")
