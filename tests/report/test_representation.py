"""mtm_robot/report/representation.py: transitions, the TD3+BC update, the frozen MTM features, the
evaluation schedule, the speed-up verdict, and a smoke run of the script end to end."""

from __future__ import annotations

import json
from types import ModuleType

import numpy as np
import pytest
import torch

from mtm_robot.data.episodes import Episode, episode_file, save_episode
from mtm_robot.data.normalize import Normalizer
from mtm_robot.model.mtm import MTM, DataSpec, ModelConfig
from mtm_robot.report import representation
from mtm_robot.training.checkpoint import Checkpoint, save_checkpoint


def _bench() -> ModuleType:
    return representation


def test_transitions_pair_each_state_with_its_successor_within_an_episode():
    bench = _bench()
    episodes = [
        Episode(np.arange(4)[:, None] + 10 * e, np.full((4, 1), e), np.arange(4) + 10 * e)
        for e in range(2)
    ]
    data = bench.transitions_from_episodes(episodes)
    assert data.states[:, 0].tolist() == [0, 1, 2, 3, 10, 11, 12, 13]
    assert data.index.tolist() == [0, 1, 2, 4, 5, 6]  # each episode's last step dropped
    np.testing.assert_array_equal(data.states[data.index + 1, 0] - data.states[data.index, 0], 1)
    assert data.rewards.tolist() == [0, 1, 2, 10, 11, 12]
    assert data.actions[:, 0].tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(SystemExit, match="actions and rewards"):
        bench.transitions_from_episodes([Episode(np.zeros((3, 2)))])


def test_td3bc_fits_the_critic_and_clones_the_actions_on_a_tiny_dataset():
    bench = _bench()
    rng = np.random.default_rng(0)
    s = torch.from_numpy(rng.normal(size=(64, 4)).astype(np.float32))
    s_next = torch.roll(s, 1, dims=0)
    a = torch.tanh(s[:, :2] - s[:, 2:])  # a deterministic behaviour policy
    r = s[:, 0].clone()
    config = bench.TD3BCConfig(hidden=32, batch_size=64, discount=0.5, alpha=0.0)  # BC only
    agent = bench.TD3BC(4, 2, config, seed=0)
    actor_before = [p.clone() for p in agent.actor.parameters()]
    first = agent.update(s, a, r, s_next)
    assert "actor" not in first  # policy delay 2: the first step updates the critics only
    assert all(torch.equal(p, q) for p, q in zip(actor_before, agent.actor.parameters()))
    second = agent.update(s, a, r, s_next)
    assert "actor" in second
    assert not all(torch.equal(p, q) for p, q in zip(actor_before, agent.actor.parameters()))
    losses = [agent.update(s, a, r, s_next) for _ in range(400)]
    critic = [x["critic"] for x in losses]
    bc = [x["bc"] for x in losses if "bc" in x]
    assert np.mean(critic[-20:]) < 0.2 * np.mean(critic[:20])
    assert bc[-1] < 0.2 * second["bc"]
    acts = agent.act(s)
    assert acts.shape == (64, 2) and np.all(np.abs(acts) <= 1)


def test_the_q_term_moves_the_actor_towards_rewarded_actions():
    bench = _bench()
    rng = np.random.default_rng(3)
    s = torch.from_numpy(rng.normal(size=(128, 3)).astype(np.float32))
    a = torch.from_numpy(rng.uniform(-1, 1, size=(128, 1)).astype(np.float32))
    r = a[:, 0].clone()  # reward = the action: BC alone would give pi ~ E[a] = 0
    config = bench.TD3BCConfig(hidden=32, batch_size=128, discount=0.0)
    agent = bench.TD3BC(3, 1, config, seed=0)
    for _ in range(300):
        agent.update(s, a, r, s)
    assert agent.act(s).mean() > 0.3


def test_mtm_features_are_represent_of_states_normalised_with_the_checkpoint(tiny_model):
    bench = _bench()
    rng = np.random.default_rng(1)
    states = rng.normal(3.0, 2.0, size=(10, 5)).astype(np.float32)
    normalizer = Normalizer.fit({"states": rng.normal(3.0, 2.0, size=(100, 5))})
    features = bench.mtm_features(Checkpoint(tiny_model, normalizer), chunk=3)(states)
    with torch.no_grad():
        z = (states - normalizer.mean["states"]) / normalizer.std["states"]
        expected = tiny_model.represent(torch.from_numpy(z.astype(np.float32)))
        unnormalised = tiny_model.represent(torch.from_numpy(states))
    assert features.shape == (10, 32) and not features.requires_grad
    torch.testing.assert_close(features, expected)
    assert not torch.allclose(features, unnormalised, atol=1e-2)


def test_raw_features_are_z_scored_with_the_dataset_statistics():
    bench = _bench()
    states = np.random.default_rng(2).normal(5.0, 3.0, size=(200, 4)).astype(np.float32)
    z = bench.raw_features(states)(states).numpy()
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-3)


def test_evaluation_schedule_adds_early_halvings_and_the_last_step():
    bench = _bench()
    schedule = bench.evaluation_steps(20000, 2000, 3)
    assert sorted(schedule) == [250, 500, 1000, *range(2000, 20001, 2000)]
    assert sorted(bench.evaluation_steps(5, 2, 0)) == [2, 4, 5]


def _saved(raw: list[float], mtm: list[float]) -> dict[str, object]:
    steps = [1000 * (i + 1) for i in range(len(raw))]
    return {
        "argv": ["-m", "mtm_robot.report.representation"],
        "data": "/data/walker/medium",
        "transitions": 100,
        "model_id": "m",
        "config": {"alpha": 2.5},
        "steps": steps[-1],
        "eval_episodes": 5,
        "max_episode_steps": 0,
        "threads": 1,
        "hardware": "test",
        "arms": {
            arm: {"0": {"curve": [[s, v] for s, v in zip(steps, c)], "wall_s": 1.0}}
            for arm, c in (("raw", raw), ("mtm-frozen", mtm))
        },
    }


def test_steps_to_reach_and_the_verdict():
    bench = _bench()
    faster = _saved([10, 30, 50, 80, 90, 90, 90], [60, 85, 90, 90, 90, 90, 90])
    assert bench.final_score(faster) == pytest.approx(90)
    steps, scores = bench.curves(faster, "mtm-frozen")
    assert bench.steps_to_reach(steps, scores, 81) == 2000
    assert bench.steps_to_reach(steps, scores, 95) is None
    md = bench.report(faster)
    assert "**met** (2.5x fewer steps)" in md  # raw reaches 81 at 5000, MTM at 2000
    slower = _saved([60, 85, 90, 90, 90, 90, 90], [10, 30, 50, 80, 90, 90, 90])
    assert "**not met** (the MTM arm is slower)" in bench.report(slower)
    never = _saved([60, 85, 90, 90, 90, 90, 90], [10, 30, 50, 50, 50, 50, 50])
    assert "**not met** (the MTM arm never reaches it)" in bench.report(never)


@pytest.mark.slow
def test_smoke_run_writes_results_and_the_plot_but_not_the_docs(tmp_path, monkeypatch):
    bench = _bench()
    rng = np.random.default_rng(0)
    store = tmp_path / "store"
    for i in range(3):
        episode = Episode(
            rng.normal(size=(20, 24)), rng.uniform(-1, 1, (20, 6)), rng.uniform(0, 1, 20)
        )
        save_episode(episode_file(store, i), episode)
    torch.manual_seed(0)
    spec = DataSpec({"states": 24, "actions": 6, "returns": 1}, segment_length=2)
    model = MTM(spec, ModelConfig(width=32, encoder_layers=1, decoder_layers=1, heads=2))
    normalizer = Normalizer.fit({"states": rng.normal(size=(50, 24))})
    save_checkpoint(tmp_path / "ck", model, normalizer, {"model_id": "tiny-walker"})
    written: list[str] = []
    monkeypatch.setattr(bench, "write_section", lambda name, md: written.append(name))
    monkeypatch.setattr(bench, "FIGURES", tmp_path / "figures")
    out = tmp_path / "out"
    argv = ["--data", str(store), "--checkpoint", str(tmp_path / "ck"), "--out", str(out),
            "--steps", "4", "--eval-every", "2", "--early-evals", "1", "--eval-episodes", "2",
            "--max-episode-steps", "5", "--batch-size", "8", "--seeds", "0", "1"]  # fmt: skip
    assert bench.main([*argv, "--no-write"]) == 0
    saved = json.loads((out / "results.json").read_text())
    assert saved["model_id"] == "tiny-walker" and saved["transitions"] == 3 * 19
    for arm in ("raw", "mtm-frozen"):
        assert sorted(saved["arms"][arm]) == ["0", "1"]
        for row in saved["arms"][arm].values():
            assert [s for s, _ in row["curve"]] == [1, 2, 4]
            assert all(np.isfinite(v) for _, v in row["curve"])
            assert row["wall_s"] > 0
    assert (out / "representation_curves.png").stat().st_size > 1000
    assert written == []
    assert not (tmp_path / "figures").exists()
    assert bench.main(["--out", str(out), "--report-only"]) == 0
    assert written == ["representation"]
    assert (tmp_path / "figures" / "representation_curves.png").is_file()
