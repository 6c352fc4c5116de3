"""Shared fixtures: tiny specs and models (a width-32 one-layer MTM)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "egl")
if "MTM_CACHE_DIR" not in os.environ:  # exported ONNX graphs: never the user's cache
    import atexit
    import shutil
    import tempfile

    os.environ["MTM_CACHE_DIR"] = tempfile.mkdtemp(prefix="mtm-test-cache-")
    atexit.register(shutil.rmtree, os.environ["MTM_CACHE_DIR"], True)
torch.set_num_threads(1)

from mtm_robot.model.mtm import MTM, DataSpec, ModelConfig  # noqa: E402


@pytest.fixture
def tiny_spec() -> DataSpec:
    return DataSpec({"states": 5, "actions": 2, "returns": 1}, segment_length=4)


@pytest.fixture
def tiny_model(tiny_spec: DataSpec) -> MTM:
    torch.manual_seed(0)
    return MTM(
        tiny_spec, ModelConfig(width=32, encoder_layers=1, decoder_layers=1, heads=2, dropout=0.0)
    ).eval()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
