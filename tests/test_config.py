from __future__ import annotations

import pytest

from mtm_robot.config import load_config, to_dict
from mtm_robot.errors import ConfigError
from mtm_robot.training.train import TrainConfig


def test_unknown_key_names_the_nearest_valid_one(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  widht: 64\n")
    with pytest.raises(ConfigError, match="unknown key 'widht' \\(did you mean 'width'\\?\\)"):
        load_config(TrainConfig, path)
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(TrainConfig, None, ["batch_sise=3"])


def test_overrides_are_typed_and_nested(tmp_path):
    cfg = load_config(
        TrainConfig,
        None,
        ["optim.lr=1e-4", "model.width=64", "steps=10", "masks.patterns={inverse_dynamics: 1.0}"],
    )
    assert cfg.optim.lr == pytest.approx(1e-4)
    assert cfg.model.width == 64
    assert cfg.masks.patterns == {"inverse_dynamics": 1.0}
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config(TrainConfig, None, ["steps=many"])


def test_presets_load():
    from pathlib import Path

    for preset in Path("launch/configs").glob("mtm_*.yaml"):
        cfg = load_config(TrainConfig, preset)
        assert to_dict(cfg)["model"]["width"] > 0
