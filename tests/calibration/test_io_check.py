"""The I/O map check on real simulators: right maps pass, wrong ones are reported by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from calibration.io_check import check_io_map
from controllers.io_map import IOMap, describe_env, load_io_map
from mtm_robot.errors import SpecMismatchError
from sim import registry

CONFIGS = Path(__file__).resolve().parents[2] / "launch" / "configs"


def _identity(task: str) -> IOMap:
    env = registry.make(task)
    try:
        fields, actuators = describe_env(env)
    finally:
        env.close()
    return IOMap.identity(env.task, fields, actuators)


def _kinds(result) -> list[tuple[str, list[str]]]:
    return sorted((p.kind, sorted(p.names)) for p in result.problems)


def test_the_right_walker_map_passes():
    result = check_io_map("walker", load_io_map(CONFIGS / "calibration_io_map_walker.yaml"))
    assert result.ok, [p.message for p in result.problems]
    assert result.action_names == [
        "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    ]  # fmt: skip
    assert "left_knee" in result.joint_names
    assert abs(result.gain - 1).max() < 1e-6


def test_swapped_joints_and_a_flipped_sign_are_reported_by_name():
    result = check_io_map("walker", load_io_map(CONFIGS / "calibration_io_map_walker_wrong.yaml"))
    assert not result.ok
    assert _kinds(result) == [("order", ["left_hip", "right_hip"]), ("sign", ["right_knee"])]
    messages = " | ".join(p.message for p in result.problems)
    assert "'right_hip' and 'left_hip' are swapped" in messages
    assert "model action 1 ('right_knee') has its sign flipped" in messages
    summary = result.to_dict()
    assert summary["ok"] is False
    assert summary["actions"][0]["drives"] == "left_hip"


def test_scale_offset_and_state_errors_are_reported_by_name():
    m = _identity("walker")
    m.action[2].scale = 0.5  # right_ankle at half strength
    m.action[4].offset = 0.3  # left_knee offset
    m.state[2].indices = [0, 1, 2, 3, 4, 5, 6, 8, 7]  # the last two joint velocities swapped
    m.state[1].scale = -1.0  # height upside down
    m.state[0].scale = [1.0] * 13 + [2.0]  # one orientation doubled
    m.__post_init__()
    result = check_io_map("walker", m)
    assert _kinds(result) == [
        ("offset", ["left_knee"]),
        ("scale", ["right_ankle"]),
        ("state_order", ["velocity[7]", "velocity[8]"]),
        ("state_order", ["velocity[7]", "velocity[8]"]),
        ("state_scale", ["orientations[13]"]),
        ("state_sign", ["height"]),
    ]
    scale = next(p for p in result.problems if p.kind == "scale")
    assert "scaled 0.5x" in scale.message
    offset = next(p for p in result.problems if p.kind == "offset")
    assert "+0.3" in offset.message


def test_a_point_mass_map_with_swapped_axes():
    m = _identity("mujoco-pointmass")
    assert check_io_map("mujoco-pointmass", m).ok
    m.action[0].actuator, m.action[1].actuator = m.action[1].actuator, m.action[0].actuator
    m.__post_init__()
    result = check_io_map("mujoco-pointmass", m)
    assert [p.kind for p in result.problems] == ["order"]
    assert len(result.problems[0].names) == 2


def test_a_map_for_another_robot_is_a_diff_not_a_check():
    m = _identity("walker")
    m.actuators[0] = "hip_r"
    m.action[0].actuator = "hip_r"
    with pytest.raises(SpecMismatchError, match=r"missing \['right_hip'\], unknown \['hip_r'\]"):
        check_io_map("walker", m)


@pytest.mark.parametrize("task", ["cheetah-run", "Hopper-v5", "Walker2d-v5"])
def test_every_kind_of_simulator_swap_and_flip(task):
    """dm_control with contacts at reset, gymnasium with unnamed motors (named by joint)."""
    m = _identity(task)
    assert check_io_map(task, m).ok
    names = list(m.actuators)
    last = len(names) - 1
    m.action[0].actuator, m.action[last].actuator = names[last], names[0]
    m.action[1].scale = -1.0
    m.__post_init__()
    result = check_io_map(task, m)
    assert _kinds(result) == [("order", sorted([names[0], names[last]])), ("sign", [names[1]])]
