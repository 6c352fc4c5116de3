"""The closed-loop evaluator (sim/evaluation.py, mtm_robot/evaluation.py) against a lockstep
session through a real node (the same scores the controller would get), and the data-loop
script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from controllers.reference import ReferenceTrajectory
from controllers.session import EVALUATION_SEED_BASE, SessionConfig, run_session
from mtm_robot.data.episodes import Episode, episode_paths, load_episode
from mtm_robot.data.segments import DataConfig
from mtm_robot.evaluation import MTMPolicy
from mtm_robot.inference import Predictor
from mtm_robot.model.mtm import ModelConfig
from mtm_robot.return_target import default_return_target
from mtm_robot.training.checkpoint import load_checkpoint
from mtm_robot.training.train import OptimConfig, TrainConfig, Trainer
from sim import registry
from sim.datasets import rollout
from sim.evaluation import evaluate
from sim.experts.policy import shipped_expert

ROOT = Path(__file__).resolve().parents[2]


def _random_walker_episodes(n: int, steps: int = 60) -> list[Episode]:
    episodes = []
    with registry.make("walker") as env:
        for i in range(n):
            rng = np.random.default_rng(i)
            result = rollout(env, lambda _o, r: r.uniform(-1, 1, 6), i, rng)
            episodes.append(
                Episode(result.states[:steps], result.actions[:steps], result.rewards[:steps])
            )
    return episodes


def _tiny_walker_checkpoint(directory: Path) -> Path:
    config = TrainConfig(
        model=ModelConfig(width=32, encoder_layers=1, decoder_layers=1, heads=2, dropout=0.0),
        data=DataConfig(validation_fraction=0.0, return_horizon=1000),
        optim=OptimConfig(warmup_steps=1),
        steps=5,
        batch_size=16,
        eval_every=5,
        checkpoint_every=5,
        model_id="tiny-walker",
        task="walker-walk",
    )
    Trainer(config, _random_walker_episodes(3), directory).run(progress=False)
    return directory / "checkpoints" / "latest"


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", ["return_conditioned", "two_stage", "inverse_dynamics"])
def test_batched_evaluation_matches_a_lockstep_session(tmp_path, mode):
    path = _tiny_walker_checkpoint(tmp_path / "run")
    checkpoint = load_checkpoint(path)
    predictor = Predictor.from_model(checkpoint.model, checkpoint.normalizer)
    session = SessionConfig(task="walker", checkpoint=str(path), episodes=2)
    session.controller.mode = mode
    session.controller.realtime = False
    session.controller.max_steps = 40
    target = default_return_target(checkpoint.metadata)
    seeds = [EVALUATION_SEED_BASE, EVALUATION_SEED_BASE + 1]
    demo = shipped_expert("walker").parent / "demos" / "episode_000000.npz"  # the session's
    references = [ReferenceTrajectory.from_file(demo) for _ in seeds]

    def future_states(episode: int, step: int, state: np.ndarray) -> np.ndarray:
        return references[episode].desired(step, state, session.controller.future_states)

    future = future_states if mode == "inverse_dynamics" else None
    policy = MTMPolicy(predictor, mode, target, future_states=future)
    batched = evaluate(policy, "walker-walk", seeds, max_steps=40)
    result = run_session(session, tmp_path / "session", progress=False)
    lockstep = np.array([e.episode_return for e in result.episodes])
    assert all(e.ticks == 40 for e in result.episodes)
    assert all(s["deadline_misses"] == 0 for s in result.summaries)
    np.testing.assert_allclose(batched.returns, lockstep, rtol=1e-3, atol=1e-3)
    assert not np.allclose(batched.returns[0], batched.returns[1])  # seeds do differ


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_data_loop_script_records_finetunes_and_hot_swaps(tmp_path):
    base = _tiny_walker_checkpoint(tmp_path / "base")
    env = dict(os.environ, CHECKPOINT=str(base), OUT=str(tmp_path / "loop"), DEMOS="2",
               STEPS="4", EPISODES="1", LABELLED="1", DEMO_SOURCE="zmq", PYTHON=sys.executable,
               PYTHONPATH=str(ROOT))  # fmt: skip
    done = subprocess.run([str(ROOT / "scripts/data_loop_demo.sh")], env=env,
                          capture_output=True, text=True, timeout=280)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((tmp_path / "loop" / "data_loop.json").read_text())
    assert result["before"]["model_id"] == "tiny-walker@step5"
    assert result["after"]["model_id"] == "tiny-walker-ft@step4"
    demos = [load_episode(p) for p in episode_paths(tmp_path / "loop" / "demos")]
    shapes = [(len(d), d.actions is None, d.meta.get("reason")) for d in demos]
    assert shapes == [(1000, True, "end")] * 2, shapes
    assert [d.meta["stream_episode"] for d in demos] == ["robot-0", "robot-1"]
    tuned = load_checkpoint(tmp_path / "loop" / "finetune" / "checkpoints" / "latest")
    assert tuned.metadata["data_report"]["action_free_episodes"] == 2
