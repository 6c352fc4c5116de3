"""The one closed-loop evaluator (sim/evaluation.py): the same episodes as a plain one-env loop,
the controller's safety step on actions, the history and indices each call sees."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from controllers.safety import SafetyLimits
from sim import registry
from sim.evaluation import StatePolicy, evaluate

TASK = "mujoco-pointmass"  # 200 steps per episode, no reference returns


def _gain(state: np.ndarray) -> np.ndarray:
    return np.tanh(-2.0 * state[:2])


def test_the_batched_episodes_are_a_plain_loops_episodes():
    seeds = [3, 4, 5]
    expected = []
    with registry.make(TASK) as env:
        for seed in seeds:
            obs, _ = env.reset(seed=seed)
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(_gain(obs))
                total += reward
                done = terminated or truncated
            expected.append(total)
    result = evaluate(StatePolicy(_gain), TASK, seeds)
    np.testing.assert_array_equal(result.returns, expected)
    assert result.steps.tolist() == [200, 200, 200]
    assert result.seeds == seeds and np.isnan(result.scores).all()  # no reference returns
    assert result.rejected_actions == result.clipped_actions == 0
    assert len(set(expected)) == 3  # the seeds do differ


def test_walker_scores_use_the_registrys_reference_returns():
    result = evaluate(StatePolicy(lambda s: np.zeros(6)), "walker", [1, 2], max_steps=5)
    assert result.steps.tolist() == [5, 5]
    expected = [registry.normalized_score("walker-walk", r) for r in result.returns]
    np.testing.assert_allclose(result.scores, expected)
    assert result.mean_score == pytest.approx(np.mean(expected))


class _Recorder:
    """Wild actions (out of bounds, NaN, wrong shape) and a record of what each call saw."""

    history = 2

    def __init__(self) -> None:
        self.calls: list[tuple[list[int], int, list[np.ndarray], list[np.ndarray]]] = []
        self.sent: list[np.ndarray] = []

    def act(
        self,
        episodes: Sequence[int],
        step: int,
        states: np.ndarray,
        history_states: Sequence[np.ndarray],
        history_actions: Sequence[np.ndarray],
    ) -> np.ndarray:
        self.calls.append((list(episodes), step, list(history_states), list(history_actions)))
        wild = np.array([[5.0, -0.25], [np.nan, 0.5], [-3.0, 3.0]])[: len(states)]
        self.sent.append(wild)
        return wild


def test_actions_get_the_controllers_safety_step_and_calls_see_the_applied_history():
    policy = _Recorder()
    result = evaluate(policy, TASK, [0, 1, 2], max_steps=4)
    assert [c[0] for c in policy.calls] == [[0, 1, 2]] * 4
    assert [c[1] for c in policy.calls] == [0, 1, 2, 3]
    with registry.make(TASK) as env:
        limits = SafetyLimits(env.action_low, env.action_high)
        neutral = (env.action_low + env.action_high) / 2
    applied = [[limits.apply(a, None, neutral) for a in sent] for sent in policy.sent]
    assert result.rejected_actions == limits.rejected_ticks == 4  # the NaN row, every step
    assert result.clipped_actions == limits.clipped_ticks == 8
    _, _, states_at_3, actions_at_3 = policy.calls[3]
    for episode in range(3):
        assert states_at_3[episode].shape == (2, 4)  # the last two of three past states
        expected = np.stack([applied[1][episode], applied[2][episode]]).astype(np.float32)
        np.testing.assert_array_equal(actions_at_3[episode], expected)
    assert len(policy.calls[0][3][0]) == 0 and len(policy.calls[1][3][0]) == 1


def test_bad_arguments_say_what_was_wrong():
    with pytest.raises(ValueError, match="at least one reset seed"):
        evaluate(StatePolicy(_gain), TASK, [])
    with pytest.raises(ValueError, match="max_steps must be >= 0"):
        evaluate(StatePolicy(_gain), TASK, [1], max_steps=-1)
    with pytest.raises(KeyError, match="walker-walk"):
        evaluate(StatePolicy(_gain), "walkr", [1])
