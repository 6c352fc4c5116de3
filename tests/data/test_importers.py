from __future__ import annotations

import argparse
import logging

import h5py
import numpy as np
import pytest

from mtm_robot.data.importers import (
    add_data_arguments,
    load_d4rl_hdf5,
    load_data_arguments,
    load_minari,
    load_source,
)
from mtm_robot.errors import DataError


def _write_d4rl(path, with_next: bool) -> None:
    rng = np.random.default_rng(0)
    n = 12
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    next_obs = np.roll(obs, -1, axis=0)
    next_obs[6] += 1.0  # a jump: a hidden episode boundary after transition 6
    terminals = np.zeros(n, bool)
    terminals[3] = True
    timeouts = np.zeros(n, bool)
    timeouts[9] = True
    with h5py.File(path, "w") as f:
        f["observations"] = obs
        f["actions"] = rng.normal(size=(n, 2)).astype(np.float32)
        f["rewards"] = np.arange(n, dtype=np.float32)
        f["terminals"] = terminals
        f["timeouts"] = timeouts
        if with_next:
            f["next_observations"] = next_obs


def test_d4rl_episode_boundaries(tmp_path):
    path = tmp_path / "walker2d-medium.hdf5"
    _write_d4rl(path, with_next=True)
    episodes = load_d4rl_hdf5(path)
    assert [len(e) for e in episodes] == [4, 3, 3, 2]  # terminal 3, jump 6, timeout 9, end
    assert episodes[0].meta["terminated"] is True
    assert episodes[2].meta["truncated"] is True
    np.testing.assert_array_equal(episodes[1].rewards, [4, 5, 6])
    _write_d4rl(tmp_path / "plain.hdf5", with_next=False)
    assert [len(e) for e in load_source(tmp_path / "plain.hdf5")] == [4, 6, 2]


def test_d4rl_missing_key_is_named(tmp_path):
    with h5py.File(tmp_path / "bad.hdf5", "w") as f:
        f["observations"] = np.zeros((3, 2))
    with pytest.raises(DataError, match="actions"):
        load_d4rl_hdf5(tmp_path / "bad.hdf5")


def test_minari_layout(tmp_path):
    data_dir = tmp_path / "walker-expert-v0" / "data"
    data_dir.mkdir(parents=True)
    with h5py.File(data_dir / "main_data.hdf5", "w") as f:
        for i, T in enumerate([5, 8]):
            g = f.create_group(f"episode_{i}")
            g.attrs["seed"] = 10 + i
            g["observations"] = np.arange((T + 1) * 3, dtype=np.float32).reshape(T + 1, 3)
            g["actions"] = np.ones((T, 2), np.float32)
            g["rewards"] = np.ones(T, np.float32)
            g["terminations"] = np.r_[np.zeros(T - 1), 1].astype(bool)
            g["truncations"] = np.zeros(T, bool)
    episodes = load_minari(tmp_path / "walker-expert-v0")
    assert [len(e) for e in episodes] == [5, 8]
    assert episodes[1].meta["seed"] == 11
    assert episodes[0].meta["terminated"] is True
    np.testing.assert_array_equal(episodes[0].states[-1], [12, 13, 14])  # final obs dropped
    assert len(load_source(tmp_path / "walker-expert-v0")) == 2


def test_unusable_sources_say_what_was_looked_for(tmp_path):
    from mtm_robot.data.episodes import Episode, episode_file, save_episode
    from mtm_robot.data.segments import DataConfig, build_dataset

    with pytest.raises(DataError, match=r"nonexistent.hdf5 does not exist; expected an episode"):
        load_source(tmp_path / "nonexistent.hdf5")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no episodes found; looked for episode_\*.npz"):
        load_source(tmp_path / "empty")
    (tmp_path / "corrupt.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(DataError, match=r"corrupt\.hdf5: not a readable HDF5 file"):
        load_source(tmp_path / "corrupt.hdf5")
    text = tmp_path / "text"
    text.mkdir()
    np.savez(episode_file(text, 0), states=np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(DataError, match=r"episode_000000.npz: states: expected numbers"):
        load_source(text)
    mixed = tmp_path / "mixed"
    for i, dim in enumerate((24, 17, 24)):
        save_episode(episode_file(mixed, i), Episode(np.zeros((8, dim)), rewards=np.zeros(8)))
    with pytest.raises(DataError, match=r"states dim: 24 \(2 episodes, e.g. .*\) vs 17 \(1 ep"):
        build_dataset(load_source(mixed), DataConfig(modalities=["states", "returns"]))


def test_data_arguments_log_and_echo_their_sources_but_never_print(tmp_path, capsys, caplog):
    """Library code does not print: the launcher passes ``echo=print``."""
    _write_d4rl(tmp_path / "plain.hdf5", with_next=False)
    parser = argparse.ArgumentParser()
    add_data_arguments(parser)
    args = parser.parse_args(["--data", str(tmp_path / "plain.hdf5"), "--action-free"])
    echoed: list[str] = []
    with caplog.at_level(logging.INFO, logger="mtm_robot.data.importers"):
        episodes = load_data_arguments(args, echo=echoed.append)
    assert capsys.readouterr().out == ""
    assert echoed == [f"{tmp_path / 'plain.hdf5'}: 3 episodes, 12 steps (action-free)"]
    assert [r.getMessage() for r in caplog.records] == echoed
    assert all(e.actions is None for e in episodes)
