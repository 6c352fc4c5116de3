"""The calibration file: what sim_control takes from it, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest

from calibration.calibration_file import (
    CalibrationFile,
    ControlCalibration,
    ReturnTargetCalibration,
    check_task,
    load_calibration,
    save_calibration,
    session_overrides,
)
from controllers.fallback import FallbackConfig
from controllers.session import SessionConfig
from mtm_robot.config import load_config
from mtm_robot.errors import ConfigError


def _calibration(tmp_path: Path, **changes) -> Path:
    (tmp_path / "io_map.yaml").write_text("task: walker-walk\n")
    cal = CalibrationFile(
        task="walker-walk",
        checkpoint="default",
        model_id="m1",
        io_map="io_map.yaml",
        io_map_ok=True,
        control=ControlCalibration(50.0, 1.3, 18.7, True, FallbackConfig(True, 3, 10, 50)),
        return_target=ReturnTargetCalibration("return_conditioned", 0.9, 812.5),
    )
    for key, value in changes.items():
        setattr(cal, key, value)
    path = tmp_path / "calibration.yaml"
    save_calibration(cal, path)
    return path


def test_overrides_become_the_session_config(tmp_path):
    path = _calibration(tmp_path)
    assert load_calibration(path).updated_utc.endswith("Z")
    config = load_config(SessionConfig, None, session_overrides(path))
    assert config.io_map == str((tmp_path / "io_map.yaml").resolve())
    assert config.controller.control_hz == 50.0
    assert config.controller.deadline_margin_ms == 1.3
    assert config.controller.fallback == FallbackConfig(True, 3, 10, 50)
    assert config.target_return == 812.5
    # explicit options given after the calibration win
    explicit = [*session_overrides(path), "target_return=700", "controller.control_hz=40"]
    config = load_config(SessionConfig, None, explicit)
    assert (config.target_return, config.controller.control_hz) == (700.0, 40.0)


def test_partial_calibration_overrides_only_what_it_has(tmp_path):
    path = _calibration(tmp_path, control=None, return_target=None, io_map="")
    assert session_overrides(path) == []


def test_a_failed_io_map_check_or_another_task_is_refused(tmp_path):
    path = _calibration(
        tmp_path, io_map_ok=False, io_map_problems=["'right_hip' and 'left_hip' are swapped"]
    )
    with pytest.raises(ConfigError, match=r"(?s)I/O map check failed.*'right_hip' and 'left_hip'"):
        session_overrides(path)
    path = _calibration(tmp_path)
    assert check_task(path, "walker").model_id == "m1"
    with pytest.raises(
        ConfigError, match=r"calibrates task 'walker-walk', this run is 'cheetah-run'"
    ):
        check_task(path, "cheetah")
    (tmp_path / "io_map.yaml").unlink()
    with pytest.raises(ConfigError, match=r"its I/O map .*io_map.yaml does not exist"):
        session_overrides(path)


def test_unknown_keys_and_versions_are_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("format_version: 1\nretrun_target: null\n")
    with pytest.raises(ConfigError, match=r"unknown key 'retrun_target'.*'return_target'"):
        load_calibration(path)
    path.write_text("format_version: 2\n")
    with pytest.raises(ConfigError, match=r"format_version 2, expected 1"):
        load_calibration(path)


def test_a_session_refuses_a_map_that_does_not_fit_its_task(tmp_path):
    from controllers.io_map import ActionChannel, IOMap, save_io_map
    from controllers.session import run_session
    from mtm_robot.errors import SpecMismatchError

    point_mass = IOMap.identity("mujoco-pointmass", [("qpos", 2), ("qvel", 2)], ["x", "y"])
    point_mass.action = [ActionChannel("y"), ActionChannel("x")]
    save_io_map(point_mass, tmp_path / "map.yaml")
    config = SessionConfig(task="walker", io_map=str(tmp_path / "map.yaml"), episodes=1)
    with pytest.raises(SpecMismatchError, match=r"does not fit task 'walker-walk'"):
        run_session(config, tmp_path / "run", progress=False)
