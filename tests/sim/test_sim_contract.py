"""One contract test over every registered task (dm_control suite style)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import sim
from sim.env import SimEnv
from sim.gymnasium_api import GymnasiumView

TASKS = sim.known_tasks()
N_STEPS = 15


def _rollout(env: SimEnv, seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    observations, rewards, actions = [obs], [], []
    for _ in range(n):
        action = rng.uniform(env.action_low, env.action_high)
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        actions.append(action)
        if terminated or truncated:
            break
    return np.array(observations), np.array(rewards), np.array(actions)


@pytest.fixture(scope="module", params=TASKS)
def env(request: pytest.FixtureRequest) -> SimEnv:
    environment = sim.make(request.param)
    yield environment
    environment.close()


def test_spec_is_consistent(env: SimEnv) -> None:
    assert isinstance(env.observation_dim, int) and env.observation_dim > 0
    assert isinstance(env.action_dim, int) and env.action_dim > 0
    assert env.action_low.shape == env.action_high.shape == (env.action_dim,)
    assert np.all(env.action_low < env.action_high)
    assert np.all(np.isfinite(env.action_low)) and np.all(np.isfinite(env.action_high))
    assert env.control_hz > 0 and env.max_episode_steps > 0
    assert env.physics_dim == env.get_physics_state().shape[0]
    assert sim.resolve(env.task) == env.task


def test_it_is_a_robot_that_names_its_raw_io(env: SimEnv) -> None:
    """What the controller and an I/O map read (controllers.robot.DescribedRobot)."""
    from controllers.io_map import describe_env
    from controllers.robot import DescribedRobot

    assert isinstance(env, DescribedRobot)
    assert len(env.observation_sizes) == len(env.observation_names)
    assert sum(env.observation_sizes) == env.observation_dim
    assert len(env.actuator_names) == env.action_dim
    assert len(set(env.actuator_names)) == env.action_dim
    fields, actuators = describe_env(env)
    assert [n for n, _ in fields] == list(env.observation_names)
    assert actuators == list(env.actuator_names)
    assert env.mj_model.nu == env.action_dim  # the public MuJoCo accessors (calibration reads)
    assert env.mj_data.qvel.shape == (env.mj_model.nv,)


def test_reset_and_step_return_finite_values_of_the_spec(env: SimEnv) -> None:
    observations, rewards, _ = _rollout(env, seed=3, n=N_STEPS)
    assert observations.shape[1] == env.observation_dim
    assert observations.dtype == np.float64
    assert np.all(np.isfinite(observations)) and np.all(np.isfinite(rewards))
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step((env.action_low + env.action_high) / 2)
    assert obs.shape == (env.observation_dim,)
    assert isinstance(reward, float)
    assert isinstance(terminated, bool) and isinstance(truncated, bool)
    assert info["step"] == 1


def test_seeding_is_deterministic(env: SimEnv) -> None:
    first = _rollout(env, seed=7, n=N_STEPS)
    second = _rollout(env, seed=7, n=N_STEPS)
    other = _rollout(env, seed=8, n=N_STEPS)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0][0], other[0][0]), "seed does not change the initial state"


def test_action_bounds_are_accepted_and_exceeding_them_is_rejected(env: SimEnv) -> None:
    env.reset(seed=0)
    env.step(env.action_low.copy())
    env.step(env.action_high.copy())
    too_high = env.action_high.copy()
    too_high[-1] += 0.5
    with pytest.raises(ValueError, match=r"outside its bounds"):
        env.step(too_high)


def test_gymnasium_env_checker_passes(env: SimEnv) -> None:
    from gymnasium.utils.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infinite observation bounds are intended
        check_env(GymnasiumView(env), skip_render_check=True)


@pytest.mark.parametrize("task", ["walker", "Walker2d-v5", "mujoco-pointmass"])
def test_time_limit_truncates_and_requires_reset(task: str) -> None:
    with sim.make(task) as env:
        env.reset(seed=0)
        # jump to the last step through the physics time, then take it
        state = env.get_physics_state()
        state[0] = (env.max_episode_steps - 1) / env.control_hz  # mjSTATE_TIME comes first
        env.set_physics_state(state)
        assert env.step_count == env.max_episode_steps - 1
        _, _, terminated, truncated, _ = env.step((env.action_low + env.action_high) / 2)
        assert truncated and not terminated
        with pytest.raises(RuntimeError, match="reset"):
            env.step((env.action_low + env.action_high) / 2)


@pytest.mark.parametrize("task", ["walker", "mujoco-pointmass"])
def test_close_is_idempotent_and_final(task: str) -> None:
    env = sim.make(task)
    env.reset(seed=0)
    env.close()
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.reset(seed=0)
