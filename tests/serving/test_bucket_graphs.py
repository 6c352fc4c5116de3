"""Bucketed graph replay and ONNX Runtime provider choice, on the CPU.

:class:`BucketGraphs` runs here with :func:`eager_capture`, the stand-in for the CUDA graph
capture: the same static buffers, padding to a bucket, masks as inputs and slicing back as on a
GPU. The GPU itself is covered by ``test_gpu_parity.py`` (skipped without one).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mtm_robot.inference import Predictor, torch_forward
from mtm_robot.serving.backends import (
    PRECISION_ATOL,
    BackendConfig,
    BucketGraphs,
    bucket_for,
    bucketed,
    choose_providers,
    eager_capture,
    load_engine,
)
from mtm_robot.training.checkpoint import load_checkpoint
from mtm_robot_client.modes import MODES

from .conftest import SPEC, random_context

BUCKETS = [1, 2, 4, 8]
TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


def counting_capture(counter: list[int]):
    def capture(step):
        counter.append(1)
        return eager_capture(step)

    return capture


def test_bucket_for_picks_the_smallest_bucket_that_holds_the_batch():
    assert [bucket_for(n, BUCKETS) for n in (1, 2, 3, 4, 5, 8)] == [1, 2, 4, 4, 8, 8]
    assert bucket_for(9, BUCKETS) is None  # bucketed() splits it


@pytest.mark.parametrize("mode", list(MODES))
def test_padded_graph_batches_equal_unpadded_eager_rows_in_every_mode(checkpoint_a, mode):
    checkpoint = load_checkpoint(checkpoint_a)
    graphs = BucketGraphs(checkpoint.model, BUCKETS, device="cpu", capture=eager_capture)
    padded = Predictor(SPEC, checkpoint.normalizer, bucketed(graphs, BUCKETS))
    plain = Predictor(SPEC, checkpoint.normalizer, torch_forward(checkpoint.model))
    rng = np.random.default_rng(5)
    contexts = [random_context(mode, rng, history=h % 3) for h in range(11)]  # 8 + 3 -> 4
    for n in (1, 3, 5, 11):
        for a, b in zip(padded.predict_batch(contexts[:n]), plain.predict_batch(contexts[:n])):
            np.testing.assert_allclose(a.action_chunk, b.action_chunk, atol=1e-5, rtol=0)
            np.testing.assert_allclose(a.next_states, b.next_states, atol=1e-5, rtol=0)


def test_one_bucket_serves_a_batch_mixing_every_mode(checkpoint_a):
    """The mask is an input, not baked into the capture: rows of different modes share a
    replay and each equals its own mode's answer alone."""
    checkpoint = load_checkpoint(checkpoint_a)
    graphs = BucketGraphs(checkpoint.model, [8], device="cpu", capture=eager_capture)
    padded = Predictor(SPEC, checkpoint.normalizer, bucketed(graphs, [8]))
    plain = Predictor(SPEC, checkpoint.normalizer, torch_forward(checkpoint.model))
    rng = np.random.default_rng(6)
    contexts = [random_context(m, rng) for m in MODES]
    assert len(contexts) <= 8
    mixed = padded.predict_batch(contexts)
    for context, got in zip(contexts, mixed):
        want = plain.predict(context)
        np.testing.assert_allclose(got.action_chunk, want.action_chunk, atol=1e-5, rtol=0)


def test_every_capture_happens_at_construction_none_on_requests(checkpoint_a):
    checkpoint = load_checkpoint(checkpoint_a)
    counter: list[int] = []
    graphs = BucketGraphs(
        checkpoint.model, BUCKETS, device="cpu", capture=counting_capture(counter)
    )
    assert len(counter) == graphs.captures == len(BUCKETS)
    predictor = Predictor(SPEC, checkpoint.normalizer, bucketed(graphs, BUCKETS))
    rng = np.random.default_rng(7)
    modes = list(MODES)
    for n in range(1, 20):  # every size up to two splits
        predictor.predict_batch([random_context(modes[i % len(modes)], rng) for i in range(n)])
    assert len(counter) == len(BUCKETS)
    with pytest.raises(ValueError, match="not a captured bucket"):
        graphs(*_raw_batch(3, rng))


def _raw_batch(n: int, rng: np.random.Generator):
    inputs = {k: rng.normal(size=(n, 4, d)).astype(np.float32) for k, d in SPEC.modalities.items()}
    masks = {k: np.ones((n, 4), dtype=bool) for k in SPEC.modalities}
    return inputs, masks


def test_replies_do_not_alias_the_static_buffers(checkpoint_a):
    checkpoint = load_checkpoint(checkpoint_a)
    graphs = BucketGraphs(checkpoint.model, [2], device="cpu", capture=eager_capture)
    rng = np.random.default_rng(8)
    first = graphs(*_raw_batch(2, rng))
    kept = {k: v.copy() for k, v in first.items()}
    graphs(*_raw_batch(2, rng))
    for k in kept:
        np.testing.assert_array_equal(first[k], kept[k])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_is_within_its_stated_tolerance_but_not_equal(checkpoint_a, precision):
    checkpoint = load_checkpoint(checkpoint_a)
    exact = BucketGraphs(checkpoint.model, [4], device="cpu", capture=eager_capture)
    half = BucketGraphs(checkpoint.model, [4], "cpu", precision=precision, capture=eager_capture)
    batch = _raw_batch(4, np.random.default_rng(9))
    a, b = exact(*batch), half(*batch)
    for k in a:
        assert b[k].dtype == np.float32
        np.testing.assert_allclose(b[k], a[k], atol=PRECISION_ATOL[precision], rtol=0)
    assert any(not np.array_equal(a[k], b[k]) for k in a)  # autocast did take effect


def test_torch_precision_is_checked():
    from mtm_robot.errors import ConfigError

    with pytest.raises(ConfigError, match="precision 'fp8'"):
        BackendConfig(precision="fp8")
    with pytest.raises(ConfigError, match="torch backend only"):
        BackendConfig(backend="onnx", precision="bf16")


# -- ONNX Runtime providers ----------------------------------------------------------------------
def test_gpu_providers_in_order_tensorrt_cuda_cpu():
    everything = [TRT, CUDA, CPU]
    ok = lambda provider: None  # noqa: E731
    assert choose_providers("cuda", everything, (1, ""), ok) == ([TRT, CUDA, CPU], [])
    assert choose_providers("cuda", everything, (1, ""), ok, tensorrt=False) == ([CUDA, CPU], [])
    assert choose_providers("cpu", everything, (1, ""), ok) == ([CPU], [])
    no_trt = lambda p: "libnvinfer.so.10: cannot open" if p == TRT else None  # noqa: E731
    chosen, skipped = choose_providers("cuda", everything, (1, ""), no_trt)
    assert chosen == [CUDA, CPU] and skipped == ["Tensorrt: libnvinfer.so.10: cannot open"]
    chosen, skipped = choose_providers("cuda", everything, (0, "no CUDA driver"), ok)
    assert chosen == [CPU] and skipped == ["Tensorrt: no CUDA driver", "CUDA: no CUDA driver"]
    chosen, skipped = choose_providers("cuda", [CPU], (1, ""), ok)
    assert chosen == [CPU] and "install onnxruntime-gpu" in skipped[0]


def test_onnx_on_cuda_without_a_gpu_falls_back_to_cpu_with_one_log_line(
    checkpoint_a, caplog, capfd
):
    """This machine has onnxruntime-gpu and no GPU (every CPU machine that installs it)."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the fallback does not happen")
    caplog.set_level(logging.INFO, logger="mtm_robot.serving.backends")
    engine = load_engine(checkpoint_a, BackendConfig(backend="onnx", device="cuda", max_batch=4))
    records = [r for r in caplog.records if r.name == "mtm_robot.serving.backends"]
    warnings = [r for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert "device cuda" in message and "CPU provider" in message and "\n" not in message
    assert engine.description["providers"] == [CPU]
    assert "buckets" not in engine.description  # CPU provider: no padding
    out, err = capfd.readouterr()
    assert "EP Error" not in out + err and "Failed to load library" not in out + err
    rng = np.random.default_rng(10)
    contexts = [random_context("return_conditioned", rng) for _ in range(3)]
    plain = Predictor(SPEC, engine.checkpoint.normalizer, torch_forward(engine.checkpoint.model))
    for a, b in zip(engine.predictor.predict_batch(contexts), plain.predict_batch(contexts)):
        np.testing.assert_allclose(a.action_chunk, b.action_chunk, atol=1e-4, rtol=0)
