"""Importers for the formats the field uses: D4RL-style HDF5 files and Minari datasets
(LeRobot datasets: :mod:`mtm_robot.data.lerobot`).

Each produces :class:`~mtm_robot.data.episodes.Episode` objects in memory; nothing converts
them to an episode store first: training reads them directly (``mtm-train --data PATH``,
:func:`load_source`). D4RL files are read with h5py (no ``d4rl`` package). Minari datasets
are read through the ``minari`` library (the ``minari`` extra): by id from
``MINARI_DATASETS_PATH`` (``--data minari:ID``) or from a dataset folder with Minari's
``metadata.json``; a bare ``main_data.hdf5`` without that metadata (which the library cannot
open) is read with h5py.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mtm_robot.data.episodes import Episode, episode_paths, load_episode
from mtm_robot.errors import DataError

log = logging.getLogger(__name__)

D4RL_REQUIRED = ("observations", "actions", "rewards", "terminals")


def load_d4rl_hdf5(path: str | Path, task: str = "") -> list[Episode]:
    """Split a D4RL-style flat HDF5 file into episodes (reference 1.2).

    A transition ends an episode when ``terminals`` or ``timeouts`` is set, or when
    ``next_observations`` (if present) does not continue into the next observation
    (distance > 1e-6). The last transition always ends an episode. Actions are kept as stored.
    """
    path = Path(path)
    with _open_hdf5(path) as f:
        missing = [k for k in D4RL_REQUIRED if k not in f]
        if missing:
            raise DataError(f"{path}: not a D4RL-style file, missing {missing} (has {list(f)})")
        obs = np.asarray(f["observations"], dtype=np.float32)
        actions = np.asarray(f["actions"], dtype=np.float32)
        rewards = np.asarray(f["rewards"], dtype=np.float32).reshape(-1)
        terminals = np.asarray(f["terminals"], dtype=bool).reshape(-1)
        timeouts = (
            np.asarray(f["timeouts"], dtype=bool).reshape(-1)
            if "timeouts" in f
            else np.zeros_like(terminals)
        )
        next_obs = (
            np.asarray(f["next_observations"], dtype=np.float32)
            if "next_observations" in f
            else None
        )
    n = len(obs)
    for name, arr in (("actions", actions), ("rewards", rewards), ("terminals", terminals)):
        if len(arr) != n:
            raise DataError(f"{path}: {name} has {len(arr)} rows, observations {n}")
    ends = terminals | timeouts
    if next_obs is not None and n > 1:
        jump = np.linalg.norm(obs[1:] - next_obs[:-1], axis=1) > 1e-6
        ends[:-1] |= jump
    ends[-1] = True
    episodes = []
    start = 0
    for end in np.flatnonzero(ends):
        sl = slice(start, end + 1)
        meta = {
            "task": task,
            "source": f"d4rl:{path.name}",
            "terminated": bool(terminals[end]),
            "truncated": not bool(terminals[end]),
            "path": f"{path}[{start}:{end + 1}]",
        }
        episodes.append(Episode(obs[sl], actions[sl], rewards[sl], meta=meta))
        start = int(end) + 1
    return episodes


def load_minari(path: str | Path) -> list[Episode]:
    """Read a bare Minari ``main_data.hdf5`` with h5py (a dataset directory, its ``data/``
    folder or the file): for files without Minari's ``metadata.json``, which the ``minari``
    library cannot open; a complete dataset goes through :func:`load_minari_dataset`.

    Minari stores T+1 observations per episode (the final one included); the episode keeps the
    first T, so that ``actions[t]`` is taken in ``states[t]``.
    """
    path = Path(path)
    candidates = [path, path / "main_data.hdf5", path / "data" / "main_data.hdf5"]
    file = next((c for c in candidates if c.is_file()), None)
    if file is None:
        raise DataError(f"{path}: no Minari main_data.hdf5 found")
    episodes = []
    with _open_hdf5(file) as f:
        names = sorted(
            (k for k in f if k.startswith("episode_")), key=lambda k: int(k.split("_")[1])
        )
        if not names:
            raise DataError(f"{file}: no episode_* groups (has {list(f)[:5]})")
        for name in names:
            group = f[name]
            obs = group["observations"]
            if not isinstance(obs, h5py.Dataset):
                raise DataError(
                    f"{file}:{name}: dict observations are not supported; flatten them first"
                )
            actions = np.asarray(group["actions"], dtype=np.float32)
            T = len(actions)
            states = np.asarray(obs, dtype=np.float32)[:T].reshape(T, -1)
            meta = {
                "source": f"minari:{file.parent.parent.name}",
                "terminated": bool(np.asarray(group["terminations"])[-1]),
                "truncated": bool(np.asarray(group["truncations"])[-1]),
                "seed": int(group.attrs["seed"]) if "seed" in group.attrs else None,
                "path": f"{file}:{name}",
            }
            rewards = np.asarray(group["rewards"], dtype=np.float32)
            episodes.append(Episode(states, actions.reshape(T, -1), rewards, meta=meta))
    return episodes


MINARI_PREFIX = "minari:"


def _minari_library() -> Any:
    try:
        import minari
    except ImportError as exc:
        raise DataError(
            'Minari datasets need the minari package: pip install "mtm-robot[minari]"'
        ) from exc
    return minari


def _minari_task(env_id: str | None) -> str:
    """The task of a Minari dataset's environment: ``mtm_robot/walker-walk-v0`` (our gymnasium
    ids, ``sim.gym_ids``) -> ``walker-walk``; any other id as it is (``Hopper-v5``); "" if none."""
    if env_id and env_id.startswith("mtm_robot/") and env_id.endswith("-v0"):
        return env_id[len("mtm_robot/") : -len("-v0")]
    return env_id or ""


def load_minari_dataset(dataset: str | Path) -> list[Episode]:
    """A Minari dataset through the ``minari`` library: an id (``namespace/name-v0``, looked up
    in ``MINARI_DATASETS_PATH``, never downloaded) or a dataset folder (with ``data/``).

    Minari stores T+1 observations per episode; the episode keeps the first T, so that
    ``actions[t]`` is taken in ``states[t]``.
    """
    minari = _minari_library()
    folder = Path(dataset)
    data = folder / "data" if (folder / "data" / "metadata.json").is_file() else folder
    if (data / "metadata.json").is_file():
        loaded = minari.MinariDataset(data)
    else:
        local = minari.list_local_datasets()
        if str(dataset) not in local:
            raise DataError(
                f"Minari dataset '{dataset}' is not a dataset folder and not among the local "
                f"ids {sorted(local)} (MINARI_DATASETS_PATH); downloading is left to "
                f"`minari download {dataset}`"
            )
        loaded = minari.load_dataset(str(dataset))
    name = loaded.spec.dataset_id
    env_id = loaded.spec.env_spec.id if loaded.spec.env_spec is not None else None
    episodes = []
    for episode in loaded.iterate_episodes():
        if not isinstance(episode.observations, np.ndarray):
            raise DataError(f"{name}: dict observations are not supported; flatten them first")
        T = len(episode.actions)
        meta = {
            "task": _minari_task(env_id),  # what a checkpoint trained on it records
            "source": f"minari:{name}",
            "minari_env_id": env_id,
            "terminated": bool(episode.terminations[-1]),
            "truncated": bool(episode.truncations[-1]),
            "episode_index": int(episode.id),
        }
        episodes.append(
            Episode(
                np.asarray(episode.observations, np.float32)[:T].reshape(T, -1),
                np.asarray(episode.actions, np.float32).reshape(T, -1),
                np.asarray(episode.rewards, np.float32),
                meta=meta,
            )
        )
    return episodes


SUPPORTED_SOURCES = (
    "an episode-store folder (episode_*.npz), a D4RL-style .hdf5/.h5 file, a Minari "
    "dataset (a folder with main_data.hdf5 or data/main_data.hdf5), or a LeRobot dataset "
    "folder (meta/info.json), or minari:ID (a local Minari dataset by id)"
)


def _open_hdf5(path: Path) -> h5py.File:
    """``h5py.File(path, "r")``; a missing or unreadable file is a DataError naming it."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from exc


def load_source(path: str | Path) -> list[Episode]:
    """Episodes from an episode-store directory, a D4RL HDF5 file, a Minari dataset (folder or
    ``minari:ID``) or a LeRobot dataset folder."""
    if str(path).startswith(MINARI_PREFIX):
        return load_minari_dataset(str(path)[len(MINARI_PREFIX) :])
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist; expected {SUPPORTED_SOURCES}")
    if path.is_dir():
        if (path / "meta" / "info.json").is_file():
            from mtm_robot.data.lerobot import load_lerobot  # pyarrow: the lerobot extra

            return load_lerobot(path)
        store = episode_paths(path)
        if store:
            episodes = []
            for p in store:
                episode = load_episode(p)
                episode.meta.setdefault("path", str(p))
                episodes.append(episode)
            return episodes
        if not any(c.is_file() for c in (path / "main_data.hdf5", path / "data/main_data.hdf5")):
            hdf5 = sorted(p.name for p in path.glob("*.h*5"))
            hint = f"; it holds {', '.join(hdf5[:3])}: pass the file itself" if hdf5 else ""
            raise DataError(
                f"{path}: no episodes found; looked for episode_*.npz (episode store), "
                f"main_data.hdf5 and data/main_data.hdf5 (Minari){hint}"
            )
        if any((p / "metadata.json").is_file() for p in (path, path / "data")):
            return load_minari_dataset(path)  # a complete Minari dataset: the library reads it
        return load_minari(path)
    if path.suffix in (".hdf5", ".h5"):
        with _open_hdf5(path) as f:
            is_minari = any(k.startswith("episode_") for k in f)
        return load_minari(path) if is_minari else load_d4rl_hdf5(path)
    raise DataError(f"{path}: expected {SUPPORTED_SOURCES}")


class _MarkActionFree(argparse.Action):
    """``--action-free`` marks the preceding ``--data`` as action-free."""

    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
        if not namespace.data:
            parser.error("--action-free must follow a --data PATH")
        namespace.action_free.add(len(namespace.data) - 1)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data PATH [--action-free]`` (repeatable), as the training launchers take them."""
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        type=Path,
        required=True,
        help="episode-store directory, D4RL-style .hdf5, Minari dataset folder or minari:ID, "
        "LeRobot dataset folder; repeatable",
    )
    parser.add_argument(
        "--action-free",
        nargs=0,
        action=_MarkActionFree,
        dest="action_free_flag",
        help="treat the preceding --data as action-free (its actions are dropped)",
    )
    parser.set_defaults(action_free=set())


def load_data_arguments(
    args: argparse.Namespace, echo: Callable[[str], None] | None = None
) -> list[Episode]:
    """The episodes named by :func:`add_data_arguments`; one line per source is logged (INFO)
    and handed to ``echo`` (a launcher passes ``print``)."""
    episodes = []
    for index, path in enumerate(args.data):
        loaded = load_source(path)
        if index in args.action_free:
            loaded = [e.without_actions() for e in loaded]
        free = " (action-free)" if index in args.action_free else ""
        line = f"{path}: {len(loaded)} episodes, {sum(len(e) for e in loaded)} steps{free}"
        log.info("%s", line)
        if echo is not None:
            echo(line)
        episodes.extend(loaded)
    return episodes
