"""LeRobot datasets in and out, as files on disk (pyarrow; no ``lerobot`` package needed).

The ``lerobot`` package does not install beside this project's pins (measured in
``docs/interop.md``: it requires ``torch<2.11`` and, held to our ``torch==2.13.0``, resolves to
an old release that downgrades ``gymnasium`` to 0.29), so this module reads and writes
LeRobotDataset's documented on-disk layout with pyarrow.

**Written: codebase version v3.0** (what LeRobot 0.4+ creates and loads)::

    meta/info.json                             fps, features, totals, path templates
    meta/stats.json                            per-feature min/max/mean/std/count
    meta/tasks.parquet                         task string (index) -> task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode: length, tasks,
                                               dataset_from_index/to_index, data file
    data/chunk-000/file-000.parquet            one row per frame, episodes in order

Frame columns: ``observation.state`` and ``action`` (fixed-size float32 lists),
``next.reward`` and ``next.done`` when known, ``timestamp``, ``frame_index``,
``episode_index``, ``index``, ``task_index``. An action-free store cannot be written (LeRobot
has no per-episode absent modality); drop those episodes or export them elsewhere.

**Read: v3.0 and v2.x** (``data/chunk-*/episode_*.parquet`` with ``meta/episodes.jsonl``): every
data parquet file is read and frames are grouped by their ``episode_index`` and ordered by
``frame_index``, which both versions carry, so episode boundaries come from the data itself.
``observation.state`` becomes ``states``, ``action`` ``actions``, ``next.reward`` ``rewards``,
the last ``next.done`` ``terminated``; ``fps`` from ``info.json`` becomes ``control_hz``.
Images and videos are not read (MTM here trains on state vectors).

Needs the ``lerobot`` extra (``pip install "mtm-robot[lerobot]"``: pyarrow only).
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mtm_robot import atomic
from mtm_robot.data.episodes import Episode
from mtm_robot.errors import DataError

log = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
CHUNKS_SIZE = 1000  # files per chunk folder (LeRobot's default)
DATA_FILE_SIZE_MB = 100  # LeRobot's default data file size
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
STATE, ACTION, REWARD, DONE = "observation.state", "action", "next.reward", "next.done"


def _pa() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError('LeRobot datasets need pyarrow: pip install "mtm-robot[lerobot]"') from exc
    return pa, pq


def _write_parquet(path: Path, table: Any) -> None:
    _, pq = _pa()
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(path, buffer.getvalue())


def _vectors(column: Any, name: str) -> np.ndarray:
    """A list or fixed-size-list column as a (T, d) float32 array."""
    pa, _ = _pa()
    if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type):
        flat = column.combine_chunks() if hasattr(column, "combine_chunks") else column
        values = np.asarray(flat.flatten(), dtype=np.float32)
        n = len(flat)
        if n and values.size % n:
            raise DataError(f"{name}: rows of different lengths")
        return values.reshape(n, -1 if n else 0)
    return np.asarray(column, dtype=np.float32).reshape(len(column), -1)


def _tasks(root: Path) -> dict[int, str]:
    _, pq = _pa()
    if (root / "meta/tasks.parquet").is_file():
        table = pq.read_table(root / "meta/tasks.parquet").to_pydict()
        names = table.get("task") or table.get("__index_level_0__") or []
        return dict(zip((int(i) for i in table["task_index"]), names))
    if (root / "meta/tasks.jsonl").is_file():
        rows = [json.loads(x) for x in (root / "meta/tasks.jsonl").read_text().splitlines() if x]
        return {int(r["task_index"]): str(r["task"]) for r in rows}
    return {}


def load_lerobot(root: str | Path) -> list[Episode]:
    """The episodes of a LeRobot dataset folder (v3.0 or v2.x); see the module docstring."""
    pa, pq = _pa()
    root = Path(root)
    info_path = root / "meta/info.json"
    if not info_path.is_file():
        raise DataError(f"{root}: not a LeRobot dataset (no meta/info.json)")
    info = json.loads(info_path.read_text())
    features = info.get("features", {})
    if STATE not in features:
        raise DataError(
            f"{root}: no '{STATE}' feature (has {sorted(features)}); MTM needs state vectors"
        )
    fps = float(info.get("fps") or 0)
    files = sorted((root / "data").glob("**/*.parquet"))
    if not files:
        raise DataError(f"{root}: no data/**/*.parquet files")
    wanted = [
        c
        for c in (STATE, ACTION, REWARD, DONE, "timestamp", "task_index")
        if c in features or c in ("timestamp", "task_index")
    ]
    tables = []
    for f in files:
        schema = pq.read_schema(f)
        tables.append(
            pq.read_table(
                f,
                columns=[c for c in [*wanted, "episode_index", "frame_index"] if c in schema.names],
            )
        )
    table = pa.concat_tables(tables, promote_options="default")
    episode_index = np.asarray(table["episode_index"], dtype=np.int64)
    frame_index = np.asarray(table["frame_index"], dtype=np.int64)
    order = np.lexsort((frame_index, episode_index))
    table = table.take(pa.array(order))
    episode_index = episode_index[order]
    tasks = _tasks(root)
    states = _vectors(table[STATE], STATE)
    actions = _vectors(table[ACTION], ACTION) if ACTION in table.column_names else None
    rewards = (
        np.asarray(table[REWARD], dtype=np.float32).reshape(-1)
        if REWARD in table.column_names
        else None
    )
    done = np.asarray(table[DONE], dtype=bool) if DONE in table.column_names else None
    stamps = (
        np.asarray(table["timestamp"], dtype=np.float64)
        if "timestamp" in table.column_names
        else None
    )
    task_index = (
        np.asarray(table["task_index"], dtype=np.int64)
        if "task_index" in table.column_names
        else None
    )
    names = {k: features[k].get("names") for k in (STATE, ACTION) if k in features}
    episodes = []
    starts = np.flatnonzero(np.r_[True, episode_index[1:] != episode_index[:-1]])
    for start, end in zip(starts, [*starts[1:], len(episode_index)]):
        sl = slice(int(start), int(end))
        meta: dict[str, Any] = {
            "source": f"lerobot:{root.name}",
            "control_hz": fps,
            "episode_index": int(episode_index[start]),
            "lerobot_version": info.get("codebase_version"),
            "robot_type": info.get("robot_type"),
            "terminated": bool(done[end - 1]) if done is not None else False,
            "truncated": not bool(done[end - 1]) if done is not None else True,
            "feature_names": names,
        }
        if task_index is not None:
            meta["task_description"] = tasks.get(int(task_index[start]), "")
        episodes.append(
            Episode(
                states[sl],
                actions[sl] if actions is not None else None,
                rewards[sl] if rewards is not None else None,
                time_s=stamps[sl] if stamps is not None else None,
                meta=meta,
            )
        )
    log.info("%s: %d episodes, %d frames", root, len(episodes), len(states))
    return episodes


def _tasks_table(tasks: Sequence[str]) -> Any:
    """``meta/tasks.parquet`` as LeRobot writes it with pandas: the task strings are the
    DataFrame's (unnamed) index, ``task_index`` its one column; the ``pandas`` schema metadata
    (pandas' documented parquet convention) makes ``pandas.read_parquet`` restore the index."""
    pa, _ = _pa()
    index = "__index_level_0__"
    pandas_meta = {
        "index_columns": [index],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": None,
                "field_name": index,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    table = pa.table(
        {"task_index": pa.array(range(len(tasks)), pa.int64()), index: pa.array(list(tasks))}
    )
    return table.replace_schema_metadata({"pandas": json.dumps(pandas_meta)})


def _stats(values: np.ndarray) -> dict[str, list[float] | list[int]]:
    v = values.reshape(len(values), -1).astype(np.float64)
    return {
        "min": v.min(0).tolist(),
        "max": v.max(0).tolist(),
        "mean": v.mean(0).tolist(),
        "std": v.std(0).tolist(),
        "count": [len(v)],
    }


def _names(meta: dict[str, Any], key: str, size: int, prefix: str) -> list[str]:
    names = meta.get(f"{'state' if key == STATE else 'action'}_names")
    return list(names) if names and len(names) == size else [f"{prefix}{i}" for i in range(size)]


def export_lerobot(
    episodes: Sequence[Episode], root: str | Path, task: str = "", robot_type: str | None = None
) -> Path:
    """Write ``episodes`` as a LeRobotDataset v3.0 folder (see the module docstring)."""
    pa, _ = _pa()
    root = Path(root)
    if not episodes:
        raise DataError("no episodes to export")
    if (root / "meta/info.json").exists():
        raise DataError(f"{root} already holds a LeRobot dataset; choose a new folder")
    free = [i for i, e in enumerate(episodes) if e.actions is None]
    if free:
        raise DataError(
            f"episodes {free[:5]} have no actions; a LeRobotDataset has an action in every "
            "frame: export the labelled episodes only"
        )
    first = episodes[0]
    ds, da = first.states.shape[1], first.actions.shape[1] if first.actions is not None else 0
    for i, e in enumerate(episodes):
        shape = (e.states.shape[1], e.actions.shape[1] if e.actions is not None else 0)
        if shape != (ds, da):
            raise DataError(f"episode {i} has state/action dims {shape}, episode 0 {(ds, da)}")
    rates = {float(e.meta.get("control_hz") or 0) for e in episodes}
    if len(rates) != 1 or not next(iter(rates)) > 0:
        raise DataError(f"episodes need one control_hz in their meta to give fps, got {rates}")
    fps = next(iter(rates))
    with_rewards = all(e.rewards is not None for e in episodes)
    task_name = task or str(first.meta.get("task", ""))

    states = np.concatenate([e.states for e in episodes]).astype(np.float32)
    actions = np.concatenate([e.actions for e in episodes if e.actions is not None])
    lengths = [len(e) for e in episodes]
    episode_index = np.repeat(np.arange(len(episodes)), lengths)
    frame_index = np.concatenate([np.arange(n) for n in lengths])
    done = np.concatenate(
        [
            np.r_[np.zeros(n - 1, bool), bool(e.meta.get("terminated", False))]
            for n, e in zip(lengths, episodes)
        ]
    )
    columns: dict[str, Any] = {
        STATE: pa.FixedSizeListArray.from_arrays(pa.array(states.reshape(-1)), ds),
        ACTION: pa.FixedSizeListArray.from_arrays(
            pa.array(actions.astype(np.float32).reshape(-1)), da
        ),
    }
    if with_rewards:
        columns[REWARD] = pa.array(
            np.concatenate([e.rewards for e in episodes if e.rewards is not None]).astype(
                np.float32
            )
        )
    columns[DONE] = pa.array(done)
    columns["timestamp"] = pa.array((frame_index / fps).astype(np.float32))
    columns["frame_index"] = pa.array(frame_index.astype(np.int64))
    columns["episode_index"] = pa.array(episode_index.astype(np.int64))
    columns["index"] = pa.array(np.arange(len(states), dtype=np.int64))
    columns["task_index"] = pa.array(np.zeros(len(states), dtype=np.int64))
    _write_parquet(root / DATA_PATH.format(chunk_index=0, file_index=0), pa.table(columns))

    features: dict[str, dict[str, Any]] = {
        STATE: {"dtype": "float32", "shape": [ds], "names": _names(first.meta, STATE, ds, "s")},
        ACTION: {"dtype": "float32", "shape": [da], "names": _names(first.meta, ACTION, da, "a")},
    }
    if with_rewards:
        features[REWARD] = {"dtype": "float32", "shape": [1], "names": None}
    features[DONE] = {"dtype": "bool", "shape": [1], "names": None}
    for name, dtype in (
        ("timestamp", "float32"),
        ("frame_index", "int64"),
        ("episode_index", "int64"),
        ("index", "int64"),
        ("task_index", "int64"),
    ):
        features[name] = {"dtype": dtype, "shape": [1], "names": None}
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": len(episodes),
        "total_frames": len(states),
        "total_tasks": 1,
        "chunks_size": CHUNKS_SIZE,
        "data_files_size_in_mb": DATA_FILE_SIZE_MB,
        "video_files_size_in_mb": 500,
        "fps": int(fps) if float(fps).is_integer() else fps,
        "splits": {"train": f"0:{len(episodes)}"},
        "data_path": DATA_PATH,
        "video_path": None,
        "features": features,
    }
    stats = {STATE: _stats(states), ACTION: _stats(actions)}
    if with_rewards:
        stats[REWARD] = _stats(columns[REWARD].to_numpy())

    bounds = np.cumsum([0, *lengths])
    episode_rows = {
        "episode_index": pa.array(np.arange(len(episodes), dtype=np.int64)),
        "tasks": pa.array([[task_name]] * len(episodes), type=pa.list_(pa.string())),
        "length": pa.array(np.array(lengths, dtype=np.int64)),
        "data/chunk_index": pa.array(np.zeros(len(episodes), dtype=np.int64)),
        "data/file_index": pa.array(np.zeros(len(episodes), dtype=np.int64)),
        "dataset_from_index": pa.array(bounds[:-1].astype(np.int64)),
        "dataset_to_index": pa.array(bounds[1:].astype(np.int64)),
        "meta/episodes/chunk_index": pa.array(np.zeros(len(episodes), dtype=np.int64)),
        "meta/episodes/file_index": pa.array(np.zeros(len(episodes), dtype=np.int64)),
    }
    _write_parquet(root / EPISODES_PATH.format(chunk_index=0, file_index=0), pa.table(episode_rows))
    _write_parquet(root / "meta/tasks.parquet", _tasks_table([task_name]))
    (root / "meta").mkdir(parents=True, exist_ok=True)
    atomic.write_text(root / "meta/stats.json", json.dumps(stats, indent=4))
    atomic.write_text(root / "meta/info.json", json.dumps(info, indent=4))  # last: marks done
    return root
