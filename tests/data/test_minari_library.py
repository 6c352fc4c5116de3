"""Minari datasets through the minari library: one made with minari's own API, loaded by id."""

from __future__ import annotations

import gymnasium
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from mtm_robot.data.importers import load_minari_dataset, load_source
from mtm_robot.errors import DataError


@pytest.fixture
def minari_root(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def _make_dataset(dataset_id: str, n_episodes: int = 3, steps: int = 15) -> list[dict]:
    """Pendulum episodes written with minari.create_dataset_from_buffers; returns the raw
    arrays (T+1 observations, as Minari stores them)."""
    env = gymnasium.make("Pendulum-v1", max_episode_steps=steps)
    env.action_space.seed(0)
    raw, buffers = [], []
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=ep)
        o, a, r, te, tr = [obs], [], [], [], []
        done = False
        while not done:
            action = env.action_space.sample()
            obs, reward, terminated, truncated, _ = env.step(action)
            o.append(obs), a.append(action), r.append(reward), te.append(terminated)
            tr.append(truncated)
            done = terminated or truncated
        raw.append({"observations": np.array(o), "actions": np.array(a), "rewards": np.array(r)})
        buffers.append(
            EpisodeBuffer(
                id=ep,
                seed=ep,
                observations=np.array(o),
                actions=np.array(a),
                rewards=r,
                terminations=te,
                truncations=tr,
            )
        )
    minari.create_dataset_from_buffers(dataset_id, buffers, env=env, algorithm_name="random")
    return raw


def test_a_local_minari_dataset_loads_by_id(minari_root):
    raw = _make_dataset("test/pendulum-random-v0")
    episodes = load_source("minari:test/pendulum-random-v0")  # what --data minari:ID does
    assert len(episodes) == 3
    for ep, expected in zip(episodes, raw):
        assert len(ep) == 15  # T actions; the final (T+1-th) observation is dropped
        np.testing.assert_allclose(ep.states, expected["observations"][:15], rtol=1e-6)
        np.testing.assert_allclose(ep.actions, expected["actions"], rtol=1e-6)
        np.testing.assert_allclose(ep.rewards, expected["rewards"], rtol=1e-6)
        assert ep.meta["truncated"] and not ep.meta["terminated"]
        assert ep.meta["minari_env_id"] == "Pendulum-v1"
        assert ep.meta["task"] == "Pendulum-v1"  # a checkpoint trained on it records the task
    folder = minari_root / "test" / "pendulum-random-v0"
    by_folder = load_source(folder)  # the dataset folder goes through the library too
    np.testing.assert_array_equal(by_folder[2].states, episodes[2].states)


def test_an_unknown_id_names_the_local_ones(minari_root):
    _make_dataset("test/pendulum-random-v0", n_episodes=1, steps=3)
    with pytest.raises(DataError, match="test/pendulum-random-v0"):
        load_minari_dataset("test/nope-v0")
