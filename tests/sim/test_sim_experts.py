"""SAC pieces: log-probabilities, checkpoint round trips, the numpy actor, trainer resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sim.experts.policy import ExpertPolicy, save_actor
from sim.experts.sac import ReplayBuffer, SACAgent, SACConfig
from sim.experts.trainer import TrainConfig, Trainer

TINY = SACConfig(hidden_dim=16, batch_size=8)


def _agent(seed: int = 0, low: float = -1.0, high: float = 1.0) -> SACAgent:
    torch.manual_seed(seed)
    return SACAgent(4, 2, np.full(2, low), np.full(2, high), TINY)


def test_log_prob_matches_torch_tanh_transformed_normal() -> None:
    agent = _agent()
    obs = torch.randn(64, 4)
    torch.manual_seed(1)
    action, log_prob = agent.actor.sample(obs)
    mean, log_std = agent.actor.distribution(obs)
    dist = torch.distributions.TransformedDistribution(
        torch.distributions.Normal(mean, log_std.exp()),
        [torch.distributions.TanhTransform()],
    )
    clipped = action.clamp(-1 + 1e-6, 1 - 1e-6)  # bounds are [-1, 1]: action == tanh(x)
    expected = dist.log_prob(clipped).sum(-1)
    ok = clipped.abs().max(-1).values < 0.999  # away from the saturated edges
    torch.testing.assert_close(log_prob[ok], expected[ok], atol=1e-3, rtol=1e-4)


def test_actions_respect_asymmetric_bounds() -> None:
    agent = _agent(low=0.0, high=3.0)
    actions = np.array([agent.act(np.random.default_rng(i).normal(size=4) * 10) for i in range(50)])
    assert actions.min() >= 0.0 and actions.max() <= 3.0
    assert actions.max() - actions.min() > 0.1


def test_update_changes_parameters_and_keeps_target_close() -> None:
    agent = _agent()
    buffer = ReplayBuffer(4, 2, 100)
    rng = np.random.default_rng(0)
    for _ in range(50):
        buffer.add(rng.normal(size=4), rng.uniform(-1, 1, 2), 1.0, rng.normal(size=4), False)
    before = {k: v.clone() for k, v in agent.state_tensors().items()}
    metrics = agent.update(buffer.sample(rng, 8))
    after = agent.state_tensors()
    assert all(math.isfinite(v) for v in metrics.values())
    assert not torch.equal(before["critic.layers.0.weight"], after["critic.layers.0.weight"])
    assert not torch.equal(before["actor.net.0.weight"], after["actor.net.0.weight"])
    # Polyak: the target moved by tau of the (small) gap only
    gap = (after["critic_target.layers.0.weight"] - before["critic_target.layers.0.weight"]).abs()
    assert 0 < gap.max() < 1e-3


def test_agent_state_round_trips_through_flat_arrays() -> None:
    agent, other = _agent(0), _agent(1)
    buffer = ReplayBuffer(4, 2, 100)
    rng = np.random.default_rng(0)
    for _ in range(20):
        buffer.add(rng.normal(size=4), rng.uniform(-1, 1, 2), 0.5, rng.normal(size=4), False)
    agent.update(buffer.sample(rng, 8))
    other.load_state_tensors(agent.state_tensors())
    other.load_optimizer_arrays(agent.optimizer_arrays())
    for key, value in agent.state_tensors().items():
        torch.testing.assert_close(other.state_tensors()[key], value, atol=0, rtol=0)
    batch = buffer.sample(np.random.default_rng(5), 8)
    torch.manual_seed(3)
    agent.update(batch)
    torch.manual_seed(3)
    other.update(batch)  # same moments + same batch + same noise -> same step
    torch.testing.assert_close(
        other.state_tensors()["actor.net.0.weight"], agent.state_tensors()["actor.net.0.weight"]
    )


def test_replay_buffer_wraps_and_round_trips() -> None:
    buffer = ReplayBuffer(1, 1, 3)
    for i in range(5):
        buffer.add(np.array([i]), np.array([0.0]), float(i), np.array([i + 1]), i == 4)
    assert buffer.size == 3 and buffer.cursor == 2
    assert sorted(buffer.reward.tolist()) == [2.0, 3.0, 4.0]
    copy = ReplayBuffer(1, 1, 3)
    copy.load_arrays(buffer.arrays())
    np.testing.assert_array_equal(copy.reward, buffer.reward)
    assert (copy.size, copy.cursor) == (3, 2)


def test_numpy_actor_matches_the_torch_actor(tmp_path: Path) -> None:
    agent = _agent(low=-2.0, high=1.0)
    tensors = {
        k[len("actor.") :]: v.numpy()
        for k, v in agent.state_tensors().items()
        if k.startswith("actor.net.")
    }
    path = tmp_path / "actor.safetensors"
    save_actor(path, tensors, np.full(2, -2.0), np.full(2, 1.0), -5.0, 2.0, {"task": "x"})
    policy = ExpertPolicy.load(path)
    obs = np.random.default_rng(0).normal(size=(32, 4))
    with torch.no_grad():
        expected = agent.actor.mean_action(torch.tensor(obs, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(policy.act(obs), expected, atol=1e-5)
    sampled = policy.act(obs[0], np.random.default_rng(1))
    assert sampled.shape == (2,) and not np.allclose(sampled, policy.act(obs[0]))
    assert policy.meta == {"task": "x"}


def test_loading_a_non_actor_file_is_refused(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(path))
    with pytest.raises(ValueError, match="not an actor file"):
        ExpertPolicy.load(path)


@pytest.mark.slow
def test_trainer_checkpoints_resumes_and_refuses_other_configs(tmp_path: Path) -> None:
    def config(steps: int, **kw: object) -> TrainConfig:
        base = dict(task="mujoco-pointmass", steps=steps, seed_steps=50, eval_every=100,
                    eval_episodes=1, checkpoint_every=100, log_every=50, sac=TINY)  # fmt: skip
        base.update(kw)
        return TrainConfig(**base)  # type: ignore[arg-type]

    trainer = Trainer(config(200), tmp_path, progress=False)
    trainer.train()
    trainer.close()
    progress = json.loads((tmp_path / "checkpoint" / "progress.json").read_text())
    assert progress["step"] == 200
    assert sorted(p.name for p in (tmp_path / "snapshots").iterdir()) == [
        "step_0000100.safetensors",
        "step_0000200.safetensors",
    ]
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000

    resumed = Trainer(config(300), tmp_path, progress=False)
    last = resumed.train()
    resumed.close()
    assert resumed.start_step == 200 and resumed.step == 300 and last["step"] == 300
    assert resumed.replay.size == 300
    evals = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals if e["kind"] == "eval"] == [100, 200, 300]

    with pytest.raises(ValueError, match="different config"):
        Trainer(config(400, seed=1), tmp_path, progress=False).train()
