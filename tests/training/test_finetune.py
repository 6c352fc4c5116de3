"""Finetuning on labelled plus action-free data, then a hot swap into a running node."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from mtm_robot.data.episodes import episode_file, save_episode
from mtm_robot.serving.process import NodeProcess
from mtm_robot.training.checkpoint import load_checkpoint
from mtm_robot.training.train import Trainer
from mtm_robot_client import NodeClient
from tests.synthetic import linear_episodes
from tests.training.test_train import _config

ROOT = Path(__file__).resolve().parents[2]


def _launch(name: str) -> ModuleType:
    """The command's module in the package (``launch/<name>.py`` is a shim over it)."""
    return importlib.import_module(f"mtm_robot.cli.{name}")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_finetune_keeps_the_normaliser_and_pushes_into_a_running_node(tmp_path):
    Trainer(_config(20), linear_episodes(10, length=20), tmp_path / "base").run(progress=False)
    base = tmp_path / "base" / "checkpoints" / "latest"
    for i, e in enumerate(linear_episodes(6, length=20, seed=5, action_free=6)):
        save_episode(episode_file(tmp_path / "demos", i), e)
    for i, e in enumerate(linear_episodes(2, length=20, seed=6)):
        save_episode(episode_file(tmp_path / "labelled", i), e)
    # the node must opt in to remote reload, and only from where finetune writes
    allow = ["--allow-reload", str(tmp_path / "ft")]
    with NodeProcess(str(base), tmp_path / "node.log", allow) as node:
        node.start()
        finetune = _launch("finetune")
        rc = finetune.main(
            [
                "--checkpoint",
                str(base),
                "--data",
                str(tmp_path / "labelled"),
                "--data",
                str(tmp_path / "demos"),
                "--action-free",
                "--out",
                str(tmp_path / "ft"),
                "--steps",
                "10",
                "--eval-episodes",
                "0",
                "--push",
                node.endpoint,
                "--no-progress",
            ]
        )
        assert rc == 0
        with NodeClient(node.endpoint) as client:
            served = client.metadata()["model_id"]
            reply = client.act("behavior_cloning", np.zeros(4, np.float32), timeout_ms=5000)
    tuned = load_checkpoint(tmp_path / "ft" / "checkpoints" / "latest")
    before = load_checkpoint(base)
    assert served == tuned.model_id == "mtm-ft@step10"
    assert reply.model_id == tuned.model_id
    for name in before.normalizer.mean:  # same units as the model it replaces
        np.testing.assert_array_equal(tuned.normalizer.mean[name], before.normalizer.mean[name])
    assert tuned.metadata["provenance"]["finetuned_from"] == str(base)
    assert tuned.metadata["data_report"]["action_free_episodes"] == 6


def test_a_checkpoint_trained_on_a_gpu_finetunes_on_this_cpu(tmp_path):
    import yaml

    Trainer(_config(5), linear_episodes(4, length=20), tmp_path / "base").run(progress=False)
    base = tmp_path / "base" / "checkpoints" / "latest"
    meta_file = base / "checkpoint.yaml"
    meta = yaml.safe_load(meta_file.read_text())
    meta["training"]["device"] = "cuda"  # as the report's H200 runs write it
    meta["training"]["threads"] = 16
    meta_file.write_text(yaml.safe_dump(meta, sort_keys=False))
    for i, e in enumerate(linear_episodes(2, length=20, seed=6)):
        save_episode(episode_file(tmp_path / "labelled", i), e)
    finetune = _launch("finetune")
    argv = ["--checkpoint", str(base), "--data", str(tmp_path / "labelled"),
            "--out", str(tmp_path / "ft"), "--steps", "2", "--eval-episodes", "0",
            "--no-progress"]  # fmt: skip
    assert finetune.main(argv) == 0
    tuned = load_checkpoint(tmp_path / "ft" / "checkpoints" / "latest")
    assert tuned.metadata["training"]["device"] == "auto"
    assert tuned.metadata["training"]["threads"] == 0
