"""The shipped walker policies still work with today's simulator and observation layout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.evaluation import StatePolicy, evaluate
from sim.experts.policy import ExpertPolicy, shipped_expert
from sim.experts.trainer import TEST_SEED_BASE
from sim.registry import make

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_shipped_walker_expert_walks_and_medium_is_weaker() -> None:
    expert = ExpertPolicy.load(shipped_expert("walker"))
    medium = ExpertPolicy.load(shipped_expert("walker", "medium"))
    assert expert.meta["task"] == medium.meta["task"] == "walker-walk"
    with make("walker") as env:
        assert expert.observation_dim == env.observation_dim
        seeds = [TEST_SEED_BASE, TEST_SEED_BASE + 1]
    expert_returns = evaluate(StatePolicy(expert.act), "walker", seeds).returns
    medium_returns = evaluate(StatePolicy(medium.act), "walker", seeds).returns
    # shipped numbers: expert 952.7 +- 10.2, medium 580.4 +- 186.5 (20 test seeds)
    assert expert_returns.min() > 900.0, expert_returns
    assert medium_returns.mean() < expert_returns.mean() - 100.0, medium_returns


def test_shipped_files_record_their_test_evaluation() -> None:
    info = json.loads((shipped_expert("walker").parent / "expert.json").read_text())
    assert info["test_eval"]["episodes"] >= 20
    assert info["test_eval"]["return_mean"] >= 900.0


@pytest.mark.slow
def test_collect_script_gives_identical_files_with_one_or_two_workers(tmp_path: Path) -> None:
    outputs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        subprocess.run(
            [sys.executable, str(ROOT / "launch" / "collect.py"), "--task", "mujoco-pointmass",
             "--recipe", "random", "--episodes", "3", "--seed", "7", "--out", str(out),
             "--workers", str(workers)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        outputs.append(out)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["episodes"] == 3 and summary["transitions"] == 600
    for name in ("episode_000000.npz", "episode_000002.npz"):
        with np.load(outputs[0] / name) as a, np.load(outputs[1] / name) as b:
            for key in ("states", "actions", "rewards", "physics"):
                np.testing.assert_array_equal(a[key], b[key])


def test_reacher_easy_ships_an_expert_and_a_model() -> None:
    """The second shipped task (issue 16): its policies and its MTM are in the package."""
    from mtm_robot.checkpoint_meta import shipped_tasks

    assert {"walker-walk", "reacher-easy"} <= set(shipped_tasks())
    info = json.loads((shipped_expert("reacher").parent / "expert.json").read_text())
    assert info["test_eval"]["episodes"] >= 20 and info["test_eval"]["return_mean"] >= 800.0


@pytest.mark.parametrize("task", ["walker-walk", "reacher-easy"])
def test_every_shipped_model_fits_its_task(task: str) -> None:
    """``--checkpoint default`` for a task is a model of that task's dims and action bounds."""
    from mtm_robot.checkpoint_meta import read_metadata, resolve_checkpoint_path, verify_checkpoint

    directory = resolve_checkpoint_path("default", task)
    meta = read_metadata(directory)
    verify_checkpoint(directory)
    with make(task) as env:
        assert meta["task"] == env.task == task
        assert meta["data_spec"]["modalities"]["states"] == env.observation_dim
        assert meta["data_spec"]["modalities"]["actions"] == env.action_dim
        np.testing.assert_allclose(meta["action_bounds"]["low"], env.action_low)
        np.testing.assert_allclose(meta["action_bounds"]["high"], env.action_high)
