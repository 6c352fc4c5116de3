from __future__ import annotations

import numpy as np
import pytest

from mtm_robot.errors import ConfigError
from mtm_robot.inference import Predictor, torch_forward
from mtm_robot.serving.backends import BackendConfig, batch_buckets, bucketed, warmup_contexts
from mtm_robot.training.checkpoint import load_checkpoint

from .conftest import SPEC, random_context


def test_buckets_are_powers_of_two_up_to_max_batch():
    assert batch_buckets(1) == [1]
    assert batch_buckets(8) == [1, 2, 4, 8]
    assert batch_buckets(12) == [1, 2, 4, 8, 12]


def test_bucketed_forward_pads_and_splits_without_changing_results(checkpoint_a):
    checkpoint = load_checkpoint(checkpoint_a)
    seen: list[int] = []
    forward = torch_forward(checkpoint.model)

    def recording(inputs, masks):
        seen.append(len(inputs["states"]))
        return forward(inputs, masks)

    padded = Predictor(SPEC, checkpoint.normalizer, bucketed(recording, [1, 2, 4]))
    plain = Predictor(SPEC, checkpoint.normalizer, forward)
    rng = np.random.default_rng(13)
    contexts = [random_context("return_conditioned", rng) for _ in range(7)]
    for a, b in zip(padded.predict_batch(contexts), plain.predict_batch(contexts)):
        np.testing.assert_allclose(a.action_chunk, b.action_chunk, atol=1e-5)
    assert seen == [4, 4]  # 7 -> 4 + (3 padded to 4)
    seen.clear()
    padded.predict_batch(contexts[:3])
    assert seen == [4]


def test_warmup_contexts_cover_every_mode(checkpoint_a):
    checkpoint = load_checkpoint(checkpoint_a)
    predictor = Predictor(SPEC, checkpoint.normalizer, torch_forward(checkpoint.model))
    contexts = warmup_contexts(predictor, 12)
    assert {c.mode for c in contexts} == set(predictor.modes)
    assert len(predictor.predict_batch(contexts)) == 12


def test_backend_config_rejects_unknown_values():
    with pytest.raises(ConfigError, match="backend"):
        BackendConfig(backend="tensorflow")
    with pytest.raises(ConfigError, match="device"):
        BackendConfig(device="tpu")
    with pytest.raises(ConfigError, match="max_batch"):
        BackendConfig(max_batch=0)
