"""Dataset recipes: determinism, action-free episodes, episode-store layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sim.datasets import CollectJob, RecipeActors, collect_episodes, reset_seed
from sim.experts.policy import save_actor
from sim.registry import make


def _fake_policy_dir(tmp_path: Path, task: str = "mujoco-pointmass") -> Path:
    """A policy folder with untrained (random-weight) actors: enough to test the plumbing."""
    rng = np.random.default_rng(0)
    tensors = {
        "net.0.weight": rng.normal(size=(8, 4)) * 0.3, "net.0.bias": np.zeros(8),
        "net.2.weight": rng.normal(size=(4, 8)) * 0.3, "net.2.bias": np.zeros(4),
    }  # fmt: skip
    folder = tmp_path / "policies"
    (folder / "replay").mkdir(parents=True)
    for name in ("expert.safetensors", "medium.safetensors", "replay/step_0000100.safetensors"):
        save_actor(folder / name, tensors, -np.ones(2), np.ones(2), -5.0, 2.0, {"task": task})
    return folder


def _job(
    tmp_path: Path, name: str, recipe: str, indices: tuple[int, ...], **kw: object
) -> CollectJob:
    policy_dir = kw.pop("policy_dir", None)
    return CollectJob(
        task="mujoco-pointmass",
        recipe=recipe,
        out_dir=str(tmp_path / name),
        seed=3,
        indices=indices,
        policy_dir=policy_dir,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_episodes_depend_on_seed_and_index_only(tmp_path: Path) -> None:
    from mtm_robot.data.episodes import load_episode

    collect_episodes(_job(tmp_path, "a", "random", (0, 1, 2)))
    collect_episodes(_job(tmp_path, "b", "random", (2,)))  # a different "worker"
    a = load_episode(tmp_path / "a" / "episode_000002.npz")
    b = load_episode(tmp_path / "b" / "episode_000002.npz")
    np.testing.assert_array_equal(a.states, b.states)
    np.testing.assert_array_equal(a.actions, b.actions)
    other = load_episode(tmp_path / "a" / "episode_000001.npz")
    assert not np.array_equal(a.actions, other.actions)
    assert a.meta["seed"] == reset_seed(3, 2) and a.meta["task"] == "mujoco-pointmass"


def test_recorded_episode_is_consistent_and_replayable(tmp_path: Path) -> None:
    from mtm_robot.data.episodes import load_episode

    collect_episodes(_job(tmp_path, "a", "random", (0,)))
    ep = load_episode(tmp_path / "a" / "episode_000000.npz")
    with make("mujoco-pointmass") as env:
        assert len(ep) == env.max_episode_steps
        assert ep.states.shape == (len(ep), env.observation_dim)
        assert ep.physics.shape == (len(ep), env.physics_dim)
        np.testing.assert_allclose(ep.time_s[1], 1.0 / env.control_hz)
        assert ep.meta["return"] == pytest.approx(float(ep.rewards.sum()), rel=1e-5)
        # states[t] is where actions[t] was taken; rewards[t] is received for it
        obs = env.set_physics_state(ep.physics[10])
        np.testing.assert_allclose(obs, ep.states[10], atol=1e-6)
        next_obs, reward, *_ = env.step(ep.actions[10].astype(np.float64))
        np.testing.assert_allclose(next_obs, ep.states[11], atol=1e-5)
        assert reward == pytest.approx(float(ep.rewards[10]), rel=1e-5)


def test_drop_actions_writes_no_actions_array(tmp_path: Path) -> None:
    collect_episodes(_job(tmp_path, "af", "random", (0,), drop_actions=True))
    with np.load(tmp_path / "af" / "episode_000000.npz", allow_pickle=False) as data:
        assert "actions" not in data.files
        assert {"states", "rewards", "physics"} <= set(data.files)


def test_recipes_pick_the_documented_policies(tmp_path: Path) -> None:
    from sim.datasets import PolicySource

    source = PolicySource(_fake_policy_dir(tmp_path))
    with make("mujoco-pointmass") as env:
        ids = {
            recipe: [RecipeActors(env, recipe, source).for_episode(i)[1] for i in range(4)]
            for recipe in ("random", "medium", "expert", "medium-expert", "medium-replay")
        }
    assert ids["random"] == ["uniform-random"] * 4
    assert all(i.startswith("medium.safetensors@") for i in ids["medium"])
    assert all(i.startswith("expert.safetensors@") for i in ids["expert"])
    assert [i.split("@")[0] for i in ids["medium-expert"]] == [
        "medium.safetensors", "expert.safetensors", "medium.safetensors", "expert.safetensors"
    ]  # fmt: skip
    assert [i.split("@")[0] for i in ids["medium-replay"]] == [
        "uniform-random", "step_0000100.safetensors", "uniform-random", "step_0000100.safetensors"
    ]  # fmt: skip


def test_policy_for_another_task_is_refused(tmp_path: Path) -> None:
    folder = _fake_policy_dir(tmp_path, task="walker-walk")
    with pytest.raises(ValueError, match="policy for 'walker-walk'"):
        collect_episodes(_job(tmp_path, "x", "expert", (0,), policy_dir=str(folder)))


def test_unknown_recipe_and_missing_policies_are_errors(tmp_path: Path) -> None:
    with make("mujoco-pointmass") as env:
        with pytest.raises(ValueError, match="unknown recipe"):
            RecipeActors(env, "mediocre", None)
        with pytest.raises(ValueError, match="needs a policy folder"):
            RecipeActors(env, "expert", None)
    with pytest.raises(FileNotFoundError, match=r"expert\.safetensors"):
        collect_episodes(_job(tmp_path, "x", "expert", (0,), policy_dir=str(tmp_path)))


def test_reset_seeds_work_for_any_non_negative_seed() -> None:
    # the documented formula where it fits (data already collected keeps its seeds) ...
    assert reset_seed(3, 2) == 33_000_002
    assert reset_seed(4263, 999_999) == 30_000_000 + 4263 * 1_000_000 + 999_999
    # ... and past 2**32 a hash: in range, reproducible, distinct per episode and per seed
    for seed in (4265, 90_417, 2**40, 10**30):
        seeds = [reset_seed(seed, i) for i in range(50)]
        assert all(0 <= s < 2**32 for s in seeds), seed
        assert seeds == [reset_seed(seed, i) for i in range(50)]
        assert len(set(seeds)) == 50
    assert reset_seed(90_417, 0) != reset_seed(90_418, 0)
    with pytest.raises(ValueError, match="must be >= 0"):
        reset_seed(-1, 0)


def test_collect_with_a_large_seed_is_deterministic(tmp_path: Path) -> None:
    from mtm_robot.data.episodes import load_episode

    for name in ("a", "b"):
        job = _job(tmp_path, name, "random", (0,))
        collect_episodes(CollectJob(**{**job.__dict__, "seed": 90_417}))
    a = load_episode(tmp_path / "a" / "episode_000000.npz")
    b = load_episode(tmp_path / "b" / "episode_000000.npz")
    np.testing.assert_array_equal(a.states, b.states)
    assert a.meta["seed"] == reset_seed(90_417, 0)


def test_missing_policies_are_named_with_the_command_that_makes_them(tmp_path: Path) -> None:
    from sim.datasets import MissingPolicyError, require_policies

    require_policies("mujoco-pointmass", "random", None)  # random needs none
    require_policies("mujoco-pointmass", "medium-replay", _fake_policy_dir(tmp_path))
    with pytest.raises(MissingPolicyError) as shipped:
        require_policies("hopper-hop", "expert", None)
    assert "python launch/train_expert.py --task hopper-hop" in str(shipped.value)
    assert "medium-replay: replay/*.safetensors" in str(shipped.value)
    with pytest.raises(MissingPolicyError, match=r"--policy-dir .*nowhere has no medium"):
        require_policies("walker-walk", "medium", tmp_path / "nowhere")
