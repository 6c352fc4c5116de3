from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from mtm_robot.data.normalize import Normalizer
from mtm_robot.errors import CheckpointError, SpecMismatchError
from mtm_robot.inference import Context, Predictor
from mtm_robot.training.checkpoint import (
    check_spec_matches,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)


def _normalizer(spec) -> Normalizer:
    rng = np.random.default_rng(0)
    return Normalizer.fit({n: rng.normal(size=(50, k)) for n, k in spec.modalities.items()})


def test_roundtrip_preserves_outputs(tmp_path, tiny_model, tiny_spec):
    norm = _normalizer(tiny_spec)
    save_checkpoint(tmp_path / "ck", tiny_model, norm, {"model_id": "tiny-1"})
    loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.model_id == "tiny-1"
    ctx = Context(
        "return_conditioned", np.ones(5), np.zeros((2, 5)), np.zeros((2, 2)), return_target=0.3
    )
    a = Predictor.from_model(tiny_model, norm).predict(ctx)
    b = Predictor.from_model(loaded.model, loaded.normalizer).predict(ctx)
    np.testing.assert_array_equal(a.action, b.action)
    assert not loaded.model.training


def test_truncated_weights_are_detected(tmp_path, tiny_model, tiny_spec):
    save_checkpoint(tmp_path, tiny_model, _normalizer(tiny_spec), {})
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated or tampered"):
        load_checkpoint(tmp_path)


def test_tampered_header_is_detected(tmp_path, tiny_model, tiny_spec):
    save_checkpoint(tmp_path, tiny_model, _normalizer(tiny_spec), {})
    meta = yaml.safe_load((tmp_path / "checkpoint.yaml").read_text())
    meta["data_spec"]["modalities"]["states"] = 9
    (tmp_path / "checkpoint.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path)
    meta["format_version"] = 99
    (tmp_path / "checkpoint.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(CheckpointError, match="format_version"):
        load_checkpoint(tmp_path)


def test_missing_checkpoint_and_dim_mismatch(tmp_path, tiny_spec):
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(SpecMismatchError, match="'states' has dim 24 but the checkpoint expects 5"):
        check_spec_matches(tiny_spec, {"states": 24, "actions": 2}, "walker-walk")


def test_weights_are_safetensors_not_pickle(tmp_path, tiny_model, tiny_spec):
    save_checkpoint(tmp_path, tiny_model, _normalizer(tiny_spec), {})
    head = (tmp_path / "model.safetensors").read_bytes()[:2]
    assert head != b"\x80\x02" and head[:1] != b"P"  # neither a pickle nor a zip (torch.save)
    assert torch.equal(load_checkpoint(tmp_path).model.mask_token, tiny_model.mask_token)


def test_metadata_that_does_not_describe_the_weights_is_refused(tmp_path, tiny_model, tiny_spec):
    # no trace of the segment length in the weights' shapes (the time table is not stored):
    # the weights file's header records the spec they were trained with
    save_checkpoint(tmp_path, tiny_model, _normalizer(tiny_spec), {})
    meta = yaml.safe_load((tmp_path / "checkpoint.yaml").read_text())
    meta["data_spec"]["segment_length"] = 8
    (tmp_path / "checkpoint.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    with pytest.raises(CheckpointError, match=r"segment_length 8 in checkpoint.yaml but 4 in"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="segment_length"):
        verify_checkpoint(tmp_path)
