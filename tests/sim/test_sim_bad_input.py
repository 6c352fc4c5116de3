"""Bad input fails fast with a message that says what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sim


@pytest.fixture(scope="module")
def walker() -> sim.SimEnv:
    env = sim.make("walker")
    env.reset(seed=0)
    yield env
    env.close()


def test_unknown_task_lists_known_tasks_and_the_nearest_match() -> None:
    with pytest.raises(KeyError) as info:
        sim.make("walker-wlak")
    message = str(info.value)
    assert "Did you mean 'walker-walk'" in message
    for task in sim.known_tasks():
        assert task in message


def test_aliases_resolve_to_the_default_task() -> None:
    assert sim.resolve("walker") == "walker-walk"
    assert sim.resolve("cheetah") == "cheetah-run"
    assert sim.resolve("walker2d-v5") == "Walker2d-v5"


@pytest.mark.parametrize("shape", [(5,), (7,), (1, 6), ()])
def test_action_of_wrong_shape_is_rejected(walker: sim.SimEnv, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"action must have shape \(6,\), got"):
        walker.step(np.zeros(shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_is_rejected_naming_the_value(walker: sim.SimEnv, bad: float) -> None:
    action = np.zeros(6)
    action[2] = bad
    with pytest.raises(ValueError, match=rf"action\[2\] is {bad} \(not finite\)"):
        walker.step(action)


def test_rejected_action_does_not_touch_the_simulator(walker: sim.SimEnv) -> None:
    before = walker.get_physics_state()
    with pytest.raises(ValueError, match="outside its bounds"):
        walker.step(np.full(6, 1.5))
    np.testing.assert_array_equal(walker.get_physics_state(), before)


def test_step_before_reset_is_an_error() -> None:
    with sim.make("mujoco-pointmass") as env, pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2))


def test_normalized_score_uses_the_registry_references() -> None:
    ref = sim.task_spec("walker").reference
    assert ref is not None
    assert sim.normalized_score("walker", ref.random) == pytest.approx(0.0)
    assert sim.normalized_score("walker", ref.expert) == pytest.approx(100.0)
    with pytest.raises(KeyError, match="no reference"):
        sim.normalized_score("mujoco-pointmass", 1.0)


def test_mjcf_without_limited_actuators_is_rejected(tmp_path: Path) -> None:
    xml = tmp_path / "scene.xml"
    xml.write_text(
        '<mujoco><worldbody><body><joint name="j" type="slide"/><geom size=".1"/></body>'
        '</worldbody><actuator><motor joint="j"/></actuator></mujoco>'
    )
    with pytest.raises(ValueError, match="ctrllimited"):
        sim.make(f"mjcf:{xml}")


def test_any_mjcf_file_is_a_task(tmp_path: Path) -> None:
    from sim.mujoco_env import POINT_MASS_XML

    xml = tmp_path / "pointmass.xml"
    xml.write_text(POINT_MASS_XML)
    with sim.make(f"mjcf:{xml}", seed=0) as env:
        obs, _ = env.reset()
        assert obs.shape == (4,)
        assert (env.observation_dim, env.action_dim) == (4, 2)
        assert env.control_hz == 100.0  # no control rate given: one physics step per action
        _, reward, *_ = env.step(np.array([0.5, -0.5]))
        assert reward == 0.0  # raw MJCF files have no task reward
