"""Every GPU backend against the CPU fp32 forward (runs wherever a GPU is present).

torch eager on CUDA, torch with CUDA graphs per bucket (fp32, bf16, fp16 autocast), ONNX
Runtime's CUDA and TensorRT providers. fp32 must agree to 1e-4 (absolute, on normalised
outputs); bf16 and fp16 to their stated tolerance (``PRECISION_ATOL``). Each batch mixes every
mode's masks at several history lengths and is not a bucket size, so padding and slicing are
exercised too. Without a GPU (or a provider) each test skips and says why. Prints the largest
deviation per backend and model (``pytest -s`` shows them; scripts/serving_gpu.sh keeps them).

``MTM_PARITY_DEVICE=cpu`` runs the torch tests on the CPU instead (the graphs through the eager
stand-in): the device script's dry run, proving this file before a GPU minute is spent on it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mtm_robot.data.normalize import Normalizer
from mtm_robot.inference import ForwardFn, torch_forward
from mtm_robot.model import masks as mask_lib
from mtm_robot.model.mtm import MTM, DataSpec, ModelConfig
from mtm_robot.serving.backends import (
    PRECISION_ATOL,
    BackendConfig,
    BucketGraphs,
    batch_buckets,
    bucketed,
    choose_providers,
    cuda_devices,
    make_forward,
    provider_library_error,
)
from mtm_robot.training.checkpoint import load_checkpoint, save_checkpoint
from mtm_robot_client.modes import MODES

DEVICE = os.environ.get("MTM_PARITY_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(
    DEVICE == "cuda" and not torch.cuda.is_available(),
    reason="no CUDA device: GPU parity runs on a lent GPU (scripts/serving_gpu.sh)",
)

# the two sizes the serving benchmark measures (bench/serve_latency.py MODELS)
SIZES = {
    "default": {"width": 128, "encoder_layers": 2, "decoder_layers": 1, "heads": 4},
    "paper": {"width": 512, "encoder_layers": 2, "decoder_layers": 1, "heads": 4},
}
SPEC = DataSpec({"states": 24, "actions": 6, "returns": 1}, segment_length=4)


@pytest.fixture(scope="module", params=list(SIZES))
def checkpoint(request, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = MTM(SPEC, ModelConfig(dropout=0.0, **SIZES[request.param])).eval()
    rng = np.random.default_rng(0)
    data = {n: rng.normal(size=(256, d)) for n, d in SPEC.modalities.items()}
    path = tmp_path_factory.mktemp("gpu") / request.param
    save_checkpoint(path, model, Normalizer.fit(data), {"model_id": request.param})
    return path


def mixed_batch(seed: int = 0) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Normalised inputs and per-sample masks: every forward of every mode at histories 0-2."""
    names, L = list(SPEC.modalities), SPEC.segment_length
    rows = [
        mask
        for mode in MODES
        for history in range(L - 1)  # a future slot after the current step fits
        for mask in mask_lib.mode_masks(mode, names, L, history)
    ]
    rng = np.random.default_rng(seed)
    inputs = {
        n: rng.normal(size=(len(rows), L, d)).astype(np.float32) for n, d in SPEC.modalities.items()
    }
    return inputs, mask_lib.stack_masks(rows)


def check(name: str, checkpoint: Path, forward: ForwardFn, atol: float) -> None:
    cpu = torch_forward(load_checkpoint(checkpoint).model.float().cpu())
    inputs, masks = mixed_batch()
    want, got = cpu(inputs, masks), forward(inputs, masks)
    worst = max(float(np.abs(got[k] - want[k]).max()) for k in want)
    print(
        f"parity {name} {checkpoint.name} on {DEVICE}: batch {len(masks['states'])}, "
        f"max |diff| {worst:.2e} (atol {atol:g})"
    )
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=atol, rtol=0, err_msg=f"{name}: {k}")


def test_torch_eager(checkpoint):
    config = BackendConfig(device=DEVICE, cuda_graphs=False, max_batch=64)
    forward, _ = make_forward(load_checkpoint(checkpoint), config)
    check("torch-eager", checkpoint, forward, PRECISION_ATOL["fp32"])


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_torch_graphs_per_bucket(checkpoint, precision):
    buckets = batch_buckets(64)
    if DEVICE == "cuda":  # the node's own path: make_forward captures at start-up
        config = BackendConfig(device="cuda", max_batch=64, precision=precision)
        forward, description = make_forward(load_checkpoint(checkpoint), config)
        assert description["captures"] == len(buckets) and description["buckets"] == buckets
    else:  # the dry run: the same buffers and padding through the eager stand-in
        graphs = BucketGraphs(load_checkpoint(checkpoint).model, buckets, DEVICE, precision)
        forward = bucketed(graphs, buckets)
    check(f"torch-graphs-{precision}", checkpoint, forward, PRECISION_ATOL[precision])


def _usable(provider: str) -> None:
    import onnxruntime as ort

    wanted, skipped = choose_providers(
        "cuda", ort.get_available_providers(), cuda_devices(), provider_library_error
    )
    if provider not in wanted:
        pytest.skip(f"{provider} does not load here: {'; '.join(skipped)}")


@pytest.mark.parametrize(
    ("provider", "tensorrt"),
    [("CUDAExecutionProvider", False), ("TensorrtExecutionProvider", True)],
)
def test_onnx_runtime_gpu_provider(checkpoint, provider, tensorrt):
    _usable(provider)
    config = BackendConfig(backend="onnx", device="cuda", max_batch=64, tensorrt=tensorrt)
    forward, description = make_forward(load_checkpoint(checkpoint), config)
    assert description["providers"][0] == provider, description
    name = f"onnx-{provider.removesuffix('ExecutionProvider').lower()}"
    check(name, checkpoint, forward, PRECISION_ATOL["fp32"])
