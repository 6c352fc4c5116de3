"""LeRobot datasets in and out: v3.0 written and read back, a v2.1 layout read."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mtm_robot.data.episodes import Episode
from mtm_robot.data.importers import load_source
from mtm_robot.data.lerobot import export_lerobot, load_lerobot
from mtm_robot.errors import DataError


def _episodes(lengths=(12, 7, 20), terminated_last=True) -> list[Episode]:
    rng = np.random.default_rng(0)
    return [
        Episode(
            rng.normal(size=(n, 5)),
            rng.uniform(-1, 1, size=(n, 3)),
            rng.normal(size=n),
            meta={
                "control_hz": 40.0,
                "task": "walker-walk",
                "terminated": terminated_last and i == len(lengths) - 1,
            },
        )
        for i, n in enumerate(lengths)
    ]


def test_export_writes_the_v3_layout(tmp_path):
    root = export_lerobot(_episodes(), tmp_path / "ds", robot_type="walker")
    info = json.loads((root / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert (info["fps"], info["total_episodes"], info["total_frames"]) == (40, 3, 39)
    assert info["features"]["observation.state"]["shape"] == [5]
    assert info["features"]["action"]["shape"] == [3]
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    assert pa.types.is_fixed_size_list(data.schema.field("observation.state").type)
    assert data["episode_index"].to_pylist() == [0] * 12 + [1] * 7 + [2] * 20
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    assert episodes["length"] == [12, 7, 20]
    assert episodes["dataset_from_index"] == [0, 12, 19]
    assert episodes["dataset_to_index"] == [12, 19, 39]
    assert episodes["tasks"] == [["walker-walk"]] * 3
    tasks = pq.read_table(root / "meta/tasks.parquet")
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["__index_level_0__"]
    stats = json.loads((root / "meta/stats.json").read_text())
    all_states = np.concatenate([e.states for e in _episodes()])
    np.testing.assert_allclose(stats["observation.state"]["mean"], all_states.mean(0), rtol=1e-5)


def test_round_trip_keeps_episodes_fps_and_termination(tmp_path):
    original = _episodes()
    root = export_lerobot(original, tmp_path / "ds")
    back = load_lerobot(root)
    assert [len(e) for e in back] == [12, 7, 20]
    for a, b in zip(original, back):
        np.testing.assert_array_equal(a.states, b.states)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.rewards, b.rewards)
        assert b.meta["control_hz"] == 40.0
        assert b.meta["task_description"] == "walker-walk"
    assert [e.meta["terminated"] for e in back] == [False, False, True]
    assert load_source(root)[2].meta["terminated"]  # training's --data takes the folder


def test_reads_a_v21_layout_with_episodes_out_of_order(tmp_path):
    """v2.1: one parquet per episode, list columns, meta/tasks.jsonl; files need not be in
    frame order: boundaries come from episode_index/frame_index."""
    root = tmp_path / "v21"
    (root / "meta").mkdir(parents=True)
    features = {
        "observation.state": {"dtype": "float32", "shape": [2], "names": None},
        "action": {"dtype": "float32", "shape": [1], "names": None},
    }
    info = {"codebase_version": "v2.1", "fps": 10, "features": features}
    (root / "meta/info.json").write_text(json.dumps(info))
    (root / "meta/tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "push"}) + "\n")
    for ep, n in ((0, 4), (1, 3)):
        frames = np.arange(n)[::-1]  # stored backwards
        table = pa.table(
            {
                "observation.state": [[ep * 10.0 + f, -f] for f in frames],
                "action": [[f * 0.5] for f in frames],
                "episode_index": [ep] * n,
                "frame_index": frames.tolist(),
                "task_index": [0] * n,
            }
        )
        (root / "data/chunk-000").mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / f"data/chunk-000/episode_{ep:06d}.parquet")
    first, second = load_lerobot(root)
    np.testing.assert_array_equal(first.states, [[0, 0], [1, -1], [2, -2], [3, -3]])
    np.testing.assert_array_equal(second.actions, [[0], [0.5], [1.0]])
    assert first.rewards is None  # no next.reward feature: absent, not zeros
    assert first.meta["control_hz"] == 10.0 and first.meta["task_description"] == "push"


def test_bad_inputs_say_what_is_wrong(tmp_path):
    with pytest.raises(DataError, match=r"no meta/info\.json"):
        load_lerobot(tmp_path)
    free = [e.without_actions() for e in _episodes()]
    with pytest.raises(DataError, match="no actions"):
        export_lerobot(free, tmp_path / "a")
    export_lerobot(_episodes(), tmp_path / "b")
    with pytest.raises(DataError, match="already holds"):
        export_lerobot(_episodes(), tmp_path / "b")


def test_the_command_exports_a_store_and_imports_it_back(tmp_path):
    from mtm_robot.cli.interop import main
    from mtm_robot.data.episodes import episode_file, load_episodes, save_episode

    for i, episode in enumerate(_episodes()):
        save_episode(episode_file(tmp_path / "store", i), episode)
    assert main(["lerobot-export", str(tmp_path / "store"), "--out", str(tmp_path / "ds")]) == 0
    assert main(["lerobot-import", str(tmp_path / "ds"), "--out", str(tmp_path / "back")]) == 0
    back = load_episodes(tmp_path / "back")
    for a, b in zip(_episodes(), back):
        np.testing.assert_array_equal(a.states, b.states)
        np.testing.assert_array_equal(a.actions, b.actions)
