from __future__ import annotations

import numpy as np
import pytest

from mtm_robot.errors import ConfigError
from mtm_robot.model import masks

NAMES = ["states", "actions", "returns"]
WEIGHTS = {"states": 0.2, "returns": 0.1, "actions": 0.7}


def test_random_autoregressive_never_shows_last_action_and_matches_reference_stats():
    rng = np.random.default_rng(1)
    n = 40_000
    visible = {name: np.zeros(4) for name in NAMES}
    all_masked = 0
    for _ in range(n):
        m = masks.random_autoregressive(NAMES, 4, rng, masks.DEFAULT_KEEP_RATIOS, WEIGHTS)
        assert not m["actions"][-1]
        for name in NAMES:
            visible[name] += m[name]
        all_masked += not any(m[name].any() for name in NAMES)
    # reference section 4.3, from a 200k-draw simulation of the release code
    expected = {
        "states": [0.65, 0.48, 0.31, 0.14],
        "returns": [0.64, 0.46, 0.29, 0.12],
        "actions": [0.52, 0.35, 0.17, 0.00],
    }
    for name in NAMES:
        np.testing.assert_allclose(visible[name] / n, expected[name], atol=0.015)
    assert all_masked / n == pytest.approx(0.077, abs=0.006)


def test_random_keeps_floor_of_ratio():
    rng = np.random.default_rng(0)
    for _ in range(200):
        m = masks.random(NAMES, 8, rng, [0.5])
        assert all(v.sum() == 4 for v in m.values())


def test_masks_are_deterministic_for_a_seed():
    draws = []
    for _ in range(2):
        rng = np.random.default_rng(42)
        draws.append(
            [masks.random_autoregressive(NAMES, 4, rng, [0.5, 1.0], WEIGHTS) for _ in range(20)]
        )
    for a, b in zip(*draws):
        for name in NAMES:
            np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.parametrize("history", [0, 1, 2, 3])
def test_return_conditioned_shows_history_current_state_and_all_returns(history):
    m = masks.return_conditioned(NAMES, 4, history)
    assert m["states"].tolist() == [t <= history for t in range(4)]
    assert m["actions"].tolist() == [t < history for t in range(4)]
    assert m["returns"].all()


def test_behavior_cloning_hides_returns():
    m = masks.behavior_cloning(NAMES, 4, 2)
    assert not m["returns"].any()
    assert m["states"].tolist() == [True, True, True, False]
    assert m["actions"].tolist() == [True, True, False, False]


def test_inverse_dynamics_default_is_reference_mask():
    m = masks.inverse_dynamics(NAMES, 4)
    assert m["states"].all() and not m["actions"].any() and not m["returns"].any()
    m = masks.inverse_dynamics(NAMES, 4, history=1, future_states=1)
    assert m["states"].tolist() == [True, True, True, False]
    assert m["actions"].tolist() == [True, False, False, False]


def test_forward_dynamics_and_goal():
    m = masks.forward_dynamics(NAMES, 4, history=1, planned_actions=1)
    assert m["states"].tolist() == [True, True, False, False]
    assert m["actions"].tolist() == [True, True, False, False]
    assert not m["returns"].any()
    g = masks.goal(NAMES, 4, history=1)
    assert g["states"].tolist() == [True, True, False, True]
    assert not g["actions"][1:].any()


def test_two_stage_second_stage_sees_every_state_and_return():
    first, second = masks.two_stage(NAMES, 4, history=1)
    assert first["states"].tolist() == [True, True, False, False]
    assert second["states"].all() and second["returns"].all()
    assert second["actions"].tolist() == [True, False, False, False]


@pytest.mark.parametrize("history", [0, 1, 2])
def test_two_stage_slot_by_slot(history):
    """Reference 4.4: stage 1 sees s_0 and R_0 only (history: also the past pairs and their
    return slots); stage 2 sees every state and return and predicts the actions from slot k."""
    first, second = masks.two_stage(NAMES, 4, history)
    k = history
    for t in range(4):
        assert first["states"][t] == (t <= k), ("stage 1 states", t)
        assert first["returns"][t] == (t <= k), ("stage 1 returns", t)
        assert first["actions"][t] == (t < k), ("stage 1 actions", t)
        assert second["states"][t] and second["returns"][t], ("stage 2", t)
        assert second["actions"][t] == (t < k), ("stage 2 actions", t)
    if history == 0:  # the paper's sampler exactly: one state and one return visible
        assert sum(int(m.sum()) for m in first.values()) == 2


def test_two_stage_needs_a_future_slot():
    with pytest.raises(ConfigError, match="history"):
        masks.two_stage(NAMES, 4, 3)


def test_bad_history_and_unknown_pattern_are_clear_errors():
    with pytest.raises(ConfigError, match="history"):
        masks.return_conditioned(NAMES, 4, 4)
    with pytest.raises(ConfigError, match="random_autoregressive"):
        masks.MaskConfig(patterns={"random_autoregresive": 1.0})


def test_sample_training_mask_respects_pattern_weights():
    config = masks.MaskConfig(patterns={"inverse_dynamics": 1.0, "random_autoregressive": 3.0})
    rng = np.random.default_rng(0)
    drawn = [masks.sample_training_mask(NAMES, 4, config, rng)[0] for _ in range(4000)]
    assert drawn.count("inverse_dynamics") / len(drawn) == pytest.approx(0.25, abs=0.03)
    for pattern in masks.TRAINING_PATTERNS:
        cfg = masks.MaskConfig(patterns={pattern: 1.0})
        name, m = masks.sample_training_mask(NAMES, 4, cfg, rng)
        assert name == pattern and set(m) == set(NAMES)


def test_mask_config_reads_the_old_mode_weights_key_and_writes_modality_weights(caplog):
    """``mode_weights`` (checkpoints and presets before the rename) still loads, with one
    deprecation line; the config is written with the new name only."""
    import logging

    from mtm_robot.config import from_dict, to_dict

    old = {"patterns": {"random_autoregressive": 1.0}, "mode_weights": {"states": 1.0}}
    with caplog.at_level(logging.WARNING, logger="mtm_robot.config"):
        config = from_dict(masks.MaskConfig, old, "training.masks")
    assert config.modality_weights == {"states": 1.0}
    assert [r.getMessage() for r in caplog.records] == [
        "training.masks: 'mode_weights' is the old name of 'modality_weights'; "
        "read as 'modality_weights' (write that)"
    ]
    written = to_dict(config)
    assert written["modality_weights"] == {"states": 1.0} and "mode_weights" not in written
    with pytest.raises(ConfigError, match="give only 'modality_weights'"):
        from_dict(masks.MaskConfig, {**old, "modality_weights": {"states": 1.0}}, "masks")


def test_an_old_checkpoint_training_config_loads_into_train_config():
    """A checkpoint written before the rename (its training config says ``mode_weights``)
    still gives a TrainConfig, e.g. for finetuning it."""
    from mtm_robot.config import from_dict
    from mtm_robot.training.train import TrainConfig

    old = {"masks": {"mode_weights": {"states": 0.3, "returns": 0.1, "actions": 0.6}}}
    config = from_dict(TrainConfig, old, "training")
    assert config.masks.modality_weights == {"states": 0.3, "returns": 0.1, "actions": 0.6}
