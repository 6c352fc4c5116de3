"""I/O maps without a simulator: conversion both ways, validation, diffs, the mapped env."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controllers.io_map import (
    ActionChannel,
    IOMap,
    MappedEnv,
    RawField,
    StateBlock,
    describe_env,
    load_io_map,
    mapped_env,
    save_io_map,
)
from mtm_robot.errors import ConfigError, SpecMismatchError

CONFIGS = Path(__file__).resolve().parents[2] / "launch" / "configs"
FIELDS = [("pos", 2), ("vel", 3)]
ACTUATORS = ["a", "b", "c"]


def _map(**changes: Any) -> IOMap:
    m = IOMap.identity("toy", FIELDS, ACTUATORS)
    for key, value in changes.items():
        setattr(m, key, value)
    m.__post_init__()
    return m


class RawToy:
    """A raw robot: observation pos(2) vel(3) = the last command padded; 3 actuators."""

    task = "toy"
    observation_dim = 5
    action_dim = 3
    action_low = np.array([-1.0, -2.0, -1.0])
    action_high = np.array([1.0, 2.0, 1.0])
    control_hz = 10.0

    def __init__(self) -> None:
        self.commands: list[np.ndarray] = []
        self.closed = False

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        return np.arange(5.0), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.commands.append(np.asarray(action))
        return np.concatenate([[0.0, 0.0], action]), 0.0, False, False, {}

    def get_physics_state(self) -> np.ndarray:
        return np.zeros(1)

    def close(self) -> None:
        self.closed = True


def test_state_blocks_select_scale_and_offset():
    m = IOMap(
        raw_observation=[RawField("pos", 2), RawField("vel", 3)],
        actuators=ACTUATORS,
        state=[
            StateBlock("vel", indices=[2, 0], scale=[2.0, -1.0], offset=1.0),
            StateBlock("pos", scale=0.5),
        ],
        action=[ActionChannel(a) for a in ACTUATORS],
    )
    raw = np.array([10.0, 20.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(m.state_from_raw(raw), [7.0, 0.0, 5.0, 10.0])
    assert m.state_dim == 4
    assert m.state_names() == ["vel[2]", "vel[0]", "pos[0]", "pos[1]"]
    with pytest.raises(SpecMismatchError, match=r"raw observation has 4 values"):
        m.state_from_raw(raw[:4])


def test_actions_reorder_scale_offset_and_bounds():
    m = _map(
        action=[
            ActionChannel("c", scale=-2.0, offset=0.5),
            ActionChannel("a"),
            ActionChannel("b", low=-1.0, high=1.5, max_delta=0.4, scale=2.0),
        ]
    )
    command = m.command_from_action(np.array([0.25, -1.0, 0.5]), np.zeros(3))
    np.testing.assert_allclose(command, [-1.0, 1.0, 0.0])  # a, b, c
    low, high = m.action_bounds(np.array([-1.0, -2.0, -1.0]), np.array([1.0, 2.0, 1.0]))
    np.testing.assert_allclose(low, [-0.25, -1.0, -0.5])  # c: (1-0.5)/-2 .. (-1-0.5)/-2
    np.testing.assert_allclose(high, [0.75, 1.0, 0.75])
    assert m.max_action_delta() == pytest.approx(0.2)  # 0.4 command units / scale 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"state": [StateBlock("vell")]}, "'vell' is not a raw observation field.*'vel'"),
        ({"state": [StateBlock("vel", indices=[0, 3])]}, r"indices \[3\] are outside field 'vel'"),
        ({"state": [StateBlock("vel", scale=[1.0, 2.0])]}, "scale has 2 values, the block has 3"),
        ({"state": [StateBlock("pos", scale=0.0)]}, "scale must not be 0"),
        ({"action": [ActionChannel("d")]}, "'d' is not in actuators"),
        (
            {"action": [ActionChannel("a"), ActionChannel("a")]},
            "'a' is driven by both action.0. and action.1.",
        ),
        ({"action": [ActionChannel("a", low=1.0, high=0.0)]}, "low 1.0 must be below high 0.0"),
        ({"action": [ActionChannel("a", max_delta=0.0)]}, "max_delta must be > 0"),
        ({"actuators": ["a", "a"]}, "listed more than once"),
    ],
)
def test_bad_maps_are_rejected_naming_the_value(changes, message):
    with pytest.raises(ConfigError, match=message):
        _map(**changes)


def test_env_and_model_diffs_name_what_differs():
    m = _map()
    with pytest.raises(SpecMismatchError, match=r"missing \['d'\], unknown \['c'\]"):
        m.check_env(FIELDS, ["a", "b", "d"], "toy")
    with pytest.raises(
        SpecMismatchError, match=r"map:  pos\(2\) vel\(3\)\n    task: pos\(2\) vel\(4\)"
    ):
        m.check_env([("pos", 2), ("vel", 4)], ACTUATORS, "toy")
    with pytest.raises(SpecMismatchError, match=r"same names in another order"):
        m.check_env(FIELDS, ["b", "a", "c"], "toy")
    m.check_model({"modalities": {"states": 5, "actions": 3}})
    m.check_model({"data_spec": {"modalities": {"states": 5, "actions": 3}}})
    with pytest.raises(
        SpecMismatchError, match=r"builds 5 values \(pos 2, vel 3\), model 'x' expects 6"
    ):
        m.check_model({"model_id": "x", "modalities": {"states": 6, "actions": 3}})
    with pytest.raises(SpecMismatchError, match=r"has 3 channels .a, b, c., model 'x' produces 2"):
        m.check_model({"model_id": "x", "modalities": {"states": 5, "actions": 2}})


def test_mapped_env_applies_the_map_both_ways():
    raw = RawToy()
    m = _map(
        state=[StateBlock("vel", scale=2.0)],
        action=[ActionChannel("b", scale=2.0), ActionChannel("a")],
    )
    env = MappedEnv(raw, m, FIELDS, ACTUATORS)
    assert (env.observation_dim, env.action_dim) == (3, 2)
    np.testing.assert_allclose(env.action_low, [-1.0, -1.0])  # b: [-2, 2] / 2
    state, _ = env.reset(seed=0)
    np.testing.assert_allclose(state, [4.0, 6.0, 8.0])
    state, *_ = env.step(np.array([0.5, -0.25]))
    np.testing.assert_allclose(raw.commands[-1], [-0.25, 1.0, 0.0])  # c idles mid-range
    np.testing.assert_allclose(state, [-0.5, 2.0, 0.0])
    env.close()
    assert raw.closed


def test_mapped_env_refuses_limits_beyond_the_actuator():
    m = _map(action=[ActionChannel("a", low=-3.0, high=1.0)])
    with pytest.raises(
        SpecMismatchError, match=r"'a'.*\[-3, 1\] exceed the actuator's range \[-1, 1\]"
    ):
        MappedEnv(RawToy(), m, FIELDS, ACTUATORS)


def test_yaml_round_trip_and_the_shipped_examples(tmp_path):
    m = _map(action=[ActionChannel("b", scale=-1.0, max_delta=0.1), ActionChannel("a")])
    save_io_map(m, tmp_path / "map.yaml")
    assert load_io_map(tmp_path / "map.yaml") == m
    (tmp_path / "typo.yaml").write_text("task: toy\nactuator: [a]\n")
    with pytest.raises(ConfigError, match=r"unknown key 'actuator'.*'actuators'"):
        load_io_map(tmp_path / "typo.yaml")
    good = load_io_map(CONFIGS / "calibration_io_map_walker.yaml")
    assert (good.state_dim, good.action_dim) == (24, 6)
    assert good.max_action_delta() == 0.5
    wrong = load_io_map(CONFIGS / "calibration_io_map_walker_wrong.yaml")
    assert [ch.actuator for ch in wrong.action][:4] == [
        "left_hip",
        "right_knee",
        "right_ankle",
        "right_hip",
    ]


class DescribedToy(RawToy):
    """RawToy naming its raw I/O (no simulator behind it)."""

    observation_names = ("pos", "vel")
    observation_sizes = (2, 3)
    actuator_names = ("a", "b", "c")


def test_describe_env_reads_the_robots_public_description():
    assert describe_env(DescribedToy()) == (FIELDS, ACTUATORS)
    env = mapped_env(DescribedToy())  # the identity map of a robot that is not a simulator
    state, _ = env.reset()
    np.testing.assert_allclose(state, np.arange(5.0))


def test_describe_env_says_what_a_robot_must_provide():
    with pytest.raises(SpecMismatchError, match="observation_names, observation_sizes and"):
        describe_env(RawToy())
    bad = DescribedToy()
    bad.observation_sizes = (2, 4)  # type: ignore[assignment]
    with pytest.raises(SpecMismatchError, match=r"do not add up to 5"):
        describe_env(bad)
    bad = DescribedToy()
    bad.actuator_names = ("a", "b")  # type: ignore[assignment]
    with pytest.raises(SpecMismatchError, match=r"2 actuator names \['a', 'b'\] for 3 actions"):
        describe_env(bad)
