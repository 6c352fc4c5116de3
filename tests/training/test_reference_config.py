"""``launch/configs/mtm_reference.yaml`` is the paper's release recipe (reference 5.4), exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtm_robot.config import load_config, to_dict
from mtm_robot.data.normalize import Normalizer
from mtm_robot.model.masks import DEFAULT_KEEP_RATIOS
from mtm_robot.training.train import TrainConfig, lr_multiplier

CONFIGS = Path(__file__).resolve().parents[2] / "launch" / "configs"
REFERENCE = CONFIGS / "mtm_reference.yaml"
FAST = CONFIGS / "mtm_reference_fast.yaml"

#: reference 5.4 (release table) and 5.1 (optimiser), field by field
RELEASE = {
    ("model", "width"): 512,
    ("model", "encoder_layers"): 2,
    ("model", "decoder_layers"): 1,
    ("model", "heads"): 4,
    ("model", "ffn_multiplier"): 4,  # FFN 2048
    ("model", "dropout"): 0.1,
    ("data", "segment_length"): 4,
    ("data", "modalities"): ["states", "actions", "returns"],
    ("data", "returns"): "average",  # discount 1.5: the averaged returns-to-go flag
    ("data", "return_horizon"): 1000,  # divisor 1000 - t (max_path_length)
    ("data", "validation_fraction"): 0.05,  # train_val_split 0.95
    ("data", "min_std"): 0.1,  # std < 0.1 replaced by 1 (reference 1.4)
    ("optim", "lr"): 1e-4,
    ("optim", "weight_decay"): 0.005,
    ("optim", "betas"): [0.9, 0.999],
    ("optim", "warmup_steps"): 40_000,
    ("optim", "min_lr_fraction"): 0.0,  # cosine to 0 at the last step
    ("masks", "patterns"): {"random_autoregressive": 1.0},
    ("masks", "keep_ratios"): list(DEFAULT_KEEP_RATIOS),
    ("masks", "modality_weights"): {"states": 0.2, "returns": 0.1, "actions": 0.7},
    ("steps",): 140_010,
    ("batch_size",): 2048,
    ("eval_every",): 20_000,
    ("checkpoint_every",): 10_000,
    ("precision",): "fp32",  # no mixed precision
}


def _get(tree: dict, path: tuple[str, ...]) -> object:
    for key in path:
        tree = tree[key]
    return tree


@pytest.mark.parametrize("path", list(RELEASE), ids=".".join)
def test_reference_preset_is_the_release_recipe(path):
    config = to_dict(load_config(TrainConfig, REFERENCE))
    got, want = _get(config, path), RELEASE[path]
    if isinstance(want, float):
        assert got == pytest.approx(want), path
    else:
        assert got == want, path


def test_reference_schedule_warms_up_then_decays_to_zero():
    config = load_config(TrainConfig, REFERENCE)
    o = config.optim
    at = lambda step: lr_multiplier(step, o.warmup_steps, config.steps, o.min_lr_fraction)  # noqa: E731
    assert at(19_999) == pytest.approx(0.5, abs=1e-4)
    assert at(40_000) == pytest.approx(1.0)
    assert at(90_005) == pytest.approx(0.5)
    assert at(140_010) == pytest.approx(0.0, abs=1e-12)


def test_reference_normaliser_replaces_std_below_a_tenth_by_one():
    config = load_config(TrainConfig, REFERENCE)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 3)) * np.array([0.05, 0.2, 2.0]) + 3.0
    norm = Normalizer.fit({"states": x}, config.data.min_std)
    assert norm.std["states"][0] == 1.0  # 0.05 < 0.1: only mean-shifted
    assert norm.std["states"][1:] == pytest.approx([0.2, 2.0], rel=0.03)


def test_fast_preset_differs_from_the_release_only_in_precision():
    release, fast = (to_dict(load_config(TrainConfig, p)) for p in (REFERENCE, FAST))
    assert release["precision"] == "fp32" and fast["precision"] == "auto"
    release.pop("precision"), fast.pop("precision")
    release.pop("model_id"), fast.pop("model_id")
    assert fast == release
