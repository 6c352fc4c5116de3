"""A stable-baselines3 .zip as collect's expert (--sb3), loaded without unpickling."""

from __future__ import annotations

import cloudpickle
import numpy as np
import pytest
from stable_baselines3 import PPO, SAC

import sim
from mtm_robot.cli import collect
from mtm_robot.data.episodes import load_episodes
from mtm_robot.errors import ConfigError
from sim.datasets import MissingPolicyError
from sim.experts.sb3 import SB3Policy
from sim.gymnasium_api import GymnasiumView

TASK = "mujoco-pointmass"


@pytest.fixture(scope="module")
def ppo_zip(tmp_path_factory):
    """A PPO trained for a few hundred steps on the point mass."""
    path = tmp_path_factory.mktemp("sb3") / "ppo_pointmass.zip"
    env = GymnasiumView(sim.make(TASK))
    model = PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=2, seed=0, device="cpu")
    model.learn(256)
    model.save(path)
    env.close()
    return path


def _no_unpickling(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("cloudpickle.loads called while loading an SB3 expert")

    monkeypatch.setattr(cloudpickle, "loads", refuse)


@pytest.mark.slow
def test_collect_with_an_sb3_expert_records_its_actions(ppo_zip, tmp_path, monkeypatch):
    reference = PPO.load(ppo_zip, device="cpu")  # SB3's own loader (it unpickles), for comparison
    _no_unpickling(monkeypatch)
    out = tmp_path / "data"
    argv = [
        "--task",
        TASK,
        "--recipe",
        "expert",
        "--sb3",
        str(ppo_zip),
        "--episodes",
        "1",
        "--out",
        str(out),
        "--deterministic",
    ]
    assert collect.main(argv) == 0
    (episode,) = load_episodes(out)
    assert episode.meta["policy_id"].startswith("sb3-ppo:ppo_pointmass.zip@")
    assert len(episode) == 200  # the point mass's 4 s at 50 Hz
    expected, _ = reference.predict(episode.states.astype(np.float32), deterministic=True)
    with sim.make(TASK) as env:
        expected = np.clip(expected, env.action_low, env.action_high)
    np.testing.assert_allclose(episode.actions, expected, atol=1e-6)


def test_sampled_actions_are_reproducible_from_the_episode_rng(ppo_zip):
    with sim.make(TASK) as env:
        policy = SB3Policy(ppo_zip, env)
        obs, _ = env.reset(seed=0)
        a = [policy.act(obs, np.random.default_rng([0, 1])) for _ in range(2)]
        b = policy.act(obs, np.random.default_rng([0, 2]))
        mean = policy.act(obs)
    np.testing.assert_array_equal(a[0], a[1])
    assert not np.allclose(a[0], b) and not np.allclose(a[0], mean)


def test_an_sac_zip_loads_too_and_a_wrong_task_is_refused(tmp_path, monkeypatch):
    with sim.make(TASK) as env:
        SAC("MlpPolicy", GymnasiumView(env), seed=0, device="cpu").save(tmp_path / "sac.zip")
    _no_unpickling(monkeypatch)
    with sim.make(TASK) as env:
        assert SB3Policy(tmp_path / "sac.zip", env).algorithm == "SAC"
    with sim.make("cartpole-swingup") as env, pytest.raises(ConfigError, match="another task"):
        SB3Policy(tmp_path / "sac.zip", env)


def test_sb3_needs_a_recipe_with_an_expert(ppo_zip, tmp_path):
    argv = [
        "--task",
        TASK,
        "--recipe",
        "random",
        "--sb3",
        str(ppo_zip),
        "--episodes",
        "1",
        "--out",
        str(tmp_path / "x"),
    ]
    with pytest.raises(MissingPolicyError, match="uses none"):
        collect.main(argv)
