"""Bad-input fixtures for the launcher tests: each file is wrong in exactly one way.

The whole folder is built once per session and hashed before and after every case, so a
launcher that writes into (or deletes from) a file it was given fails the test.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mtm_robot.data.episodes import Episode, episode_file, save_episode
from mtm_robot.data.normalize import Normalizer
from mtm_robot.model.mtm import MTM, DataSpec, ModelConfig
from mtm_robot.training.checkpoint import METADATA_FILE, WEIGHTS_FILE, save_checkpoint


def _episode(state_dim: int, steps: int = 12, seed: int = 0) -> Episode:
    rng = np.random.default_rng(seed)
    return Episode(
        rng.normal(size=(steps, state_dim)),
        rng.uniform(-1, 1, size=(steps, 6)),
        rng.normal(size=steps),
        meta={"task": "walker-walk"},
    )


def _tiny_checkpoint(directory: Path) -> Path:
    """A width-32 walker-shaped MTM (24-d states, 6-d actions, segment length 4)."""
    spec = DataSpec({"states": 24, "actions": 6, "returns": 1}, segment_length=4)
    torch.manual_seed(0)
    model = MTM(spec, ModelConfig(width=32, encoder_layers=1, decoder_layers=1, heads=2))
    normalizer = Normalizer(
        {n: np.zeros(d, np.float32) for n, d in spec.modalities.items()},
        {n: np.ones(d, np.float32) for n, d in spec.modalities.items()},
    )
    meta = {"model_id": "tiny-walker", "task": "walker-walk",
            "return_stats": {"return_min": 0.0, "return_max": 10.0}}  # fmt: skip
    return save_checkpoint(directory, model, normalizer, meta)


def _build(root: Path) -> dict[str, Path]:
    paths = {}
    paths["bad_yaml"] = root / "bad.yaml"  # a YAML syntax error on line 3
    paths["bad_yaml"].write_text("task: walker\ncontroller:\n  mode: [return_conditioned\n")
    paths["history_yaml"] = root / "history.yaml"
    paths["history_yaml"].write_text("controller:\n  history: -1\n")
    paths["corrupt_npz"] = root / "corrupt.npz"  # a zip signature, then garbage
    paths["corrupt_npz"].write_bytes(b"PK\x03\x04" + bytes(range(60)))
    paths["a_file"] = root / "a_file.txt"  # an existing file given where a directory goes
    paths["a_file"].write_text("an existing file, not a directory\n")
    paths["mixed"] = root / "mixed"  # 24-d and 17-d episodes in one store
    save_episode(episode_file(paths["mixed"], 0), _episode(24))
    save_episode(episode_file(paths["mixed"], 1), _episode(17, seed=1))
    paths["strings"] = root / "strings"  # states stored as text
    paths["strings"].mkdir()
    np.savez(
        episode_file(paths["strings"], 0),
        states=np.array([["a", "b"], ["c", "d"], ["e", "f"]]),
        meta=np.array(['{"task": "walker-walk"}']),
    )
    paths["corrupt_hdf5"] = root / "corrupt.hdf5"
    paths["corrupt_hdf5"].write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(200))
    paths["missing_hdf5"] = root / "nonexistent.hdf5"  # never created
    paths["empty"] = root / "empty"
    paths["empty"].mkdir()
    paths["walker_ckpt"] = _tiny_checkpoint(root / "walker_ckpt")  # intact
    paths["truncated_ckpt"] = _tiny_checkpoint(root / "truncated_ckpt")
    weights = paths["truncated_ckpt"] / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    paths["seglen_ckpt"] = _tiny_checkpoint(root / "seglen_ckpt")  # YAML says 8, weights 4
    meta_file = paths["seglen_ckpt"] / METADATA_FILE
    meta = yaml.safe_load(meta_file.read_text())
    meta["data_spec"]["segment_length"] = 8
    meta_file.write_text(yaml.safe_dump(meta, sort_keys=False))
    return paths


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file and folder under ``root``."""
    digest = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        digest[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Name -> path of every bad-input fixture (all under one folder, ``root``)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    paths = _build(root)
    paths["root"] = root
    return paths
