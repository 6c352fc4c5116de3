"""Exact replay: a recorded physics state plus the recorded actions reproduce the states."""

from __future__ import annotations

import numpy as np
import pytest

import sim


def _record(task: str, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    with sim.make(task) as env:
        obs, _ = env.reset(seed=seed)
        states, physics, actions = [], [], []
        for _ in range(n):
            states.append(obs)
            physics.append(env.get_physics_state())
            action = 0.3 * rng.uniform(env.action_low, env.action_high)  # gentle: no falls
            actions.append(action)
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:  # a gymnasium walker may fall: keep the prefix
                break
    assert len(states) >= 20, f"{task} episode ended after {len(states)} steps"
    return {"states": np.array(states), "physics": np.array(physics), "actions": np.array(actions)}


@pytest.mark.parametrize("task", ["walker-walk", "cheetah-run", "Walker2d-v5", "mujoco-pointmass"])
def test_replaying_recorded_actions_from_a_recorded_state_reproduces_the_states(task: str) -> None:
    rec = _record(task, n=40, seed=11)
    start = 10
    with sim.make(task) as env:
        env.reset(seed=999)  # a different episode: everything must come from the state
        obs = env.set_physics_state(rec["physics"][start])
        np.testing.assert_allclose(obs, rec["states"][start], atol=1e-6, rtol=0)
        assert env.step_count == start
        replayed = [obs]
        for t in range(start, len(rec["actions"]) - 1):
            obs, *_ = env.step(rec["actions"][t])
            replayed.append(obs)
            np.testing.assert_allclose(env.get_physics_state(), rec["physics"][t + 1], atol=1e-6)
    np.testing.assert_allclose(np.array(replayed), rec["states"][start:], atol=1e-6, rtol=0)


def test_replay_check_detects_a_changed_action() -> None:
    """The replay comparison above can fail: perturbing one action moves the states."""
    rec = _record("walker-walk", n=30, seed=5)
    with sim.make("walker-walk") as env:
        env.set_physics_state(rec["physics"][0])
        actions = rec["actions"].copy()
        actions[3] = -actions[3]
        for t in range(10):
            obs, *_ = env.step(actions[t])
    assert np.abs(obs - rec["states"][10]).max() > 1e-3


def test_set_physics_state_rejects_a_wrong_length() -> None:
    with sim.make("walker") as env, pytest.raises(ValueError, match=r"shape \(28,\)"):
        env.set_physics_state(np.zeros(5))
