from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from mtm_robot.data.episodes import (
    Episode,
    episode_file,
    episode_paths,
    load_episode,
    save_episode,
)
from mtm_robot.errors import DataError


def _episode(actions: bool = True) -> Episode:
    rng = np.random.default_rng(0)
    return Episode(
        states=rng.normal(size=(7, 3)),
        actions=rng.normal(size=(7, 2)) if actions else None,
        rewards=rng.normal(size=7),
        physics=rng.normal(size=(7, 5)),
        time_s=np.arange(7) * 0.025,
        meta={"task": "walker-walk", "seed": 3, "terminated": False, "truncated": True},
    )


def test_roundtrip_with_numpy_alone(tmp_path):
    path = save_episode(episode_file(tmp_path, 0), _episode())
    with np.load(path, allow_pickle=False) as raw:  # numpy alone, no pickle
        assert raw["states"].shape == (7, 3)
        assert raw["actions"].dtype == np.float32
        assert raw["physics"].dtype == np.float64
        meta = json.loads(str(raw["meta"][0]))
    assert meta["task"] == "walker-walk"
    assert meta["format_version"] == 1
    back = load_episode(path)
    np.testing.assert_array_equal(back.states, _episode().states)
    assert back.meta["seed"] == 3


def test_action_free_episode_has_no_actions_array(tmp_path):
    path = save_episode(tmp_path / "e.npz", _episode().without_actions())
    with np.load(path) as raw:
        assert "actions" not in raw.files
        assert "rewards" in raw.files
    assert load_episode(path).actions is None


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path):
    for i in range(3):
        save_episode(episode_file(tmp_path, i), _episode())
    assert [p.name for p in episode_paths(tmp_path)] == [
        "episode_000000.npz",
        "episode_000001.npz",
        "episode_000002.npz",
    ]
    assert not list(tmp_path.glob(".*"))


def test_corrupt_file_is_a_clear_error(tmp_path):
    path = save_episode(tmp_path / "e.npz", _episode())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"e\.npz"):
        load_episode(path)
    with zipfile.ZipFile(tmp_path / "bad.npz", "w") as z:
        z.writestr("actions.npy", b"")
    with pytest.raises(DataError, match="states"):
        load_episode(tmp_path / "bad.npz")


def test_mismatched_lengths_name_the_array():
    with pytest.raises(DataError, match="actions"):
        Episode(np.zeros((5, 2)), np.zeros((4, 1)))
