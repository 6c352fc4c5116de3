from __future__ import annotations

import re

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


def test_yaml_syntax_error_is_a_config_error_naming_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("steps: 10\nmodel:\n  width: [64\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML at line 4.*line 3"):
        load_config(TrainConfig, path)
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(TrainConfig, tmp_path)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(TrainConfig, None, ["optim.betas=[0.9,"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("steps=-5", "steps must be >= 1, got -5"),
        ("batch_size=0", "batch_size must be >= 1, got 0"),
        ("optim.lr=nan", "lr must be a positive number, got nan"),
        ("model.heads=0", "heads must be >= 1, got 0"),
        ("device=tpu", "device must be one of auto, cpu, cuda; got 'tpu'"),
    ],
)
def test_dataclass_validation_is_a_config_error_naming_the_section(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_config(TrainConfig, None, [override])
    assert str(info.value).startswith("config")


def test_session_values_are_validated_where_they_are_declared():
    from controllers.session import SessionConfig

    for override, message in [
        ("episodes=0", "config: episodes must be >= 1, got 0"),
        ("controller.control_hz=-40", "control_hz must be a positive rate in Hz"),
        ("controller.control_hz=.nan", "got nan"),
        ("controller.mode=flying", "mode must be one of"),
        ("controller.history=-1", "config.controller: history must be >= 0, got -1"),
        ("controller.fallback.safe_after_misses=0", "safe_after_misses must be >= 1, got 0"),
        ("controller.fallback.hold_ticks=-3", "hold_ticks must be >= 0, got -3"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_config(SessionConfig, None, [override])
    assert load_config(SessionConfig, None, ["controller.control_hz=0"]).controller.control_hz == 0
