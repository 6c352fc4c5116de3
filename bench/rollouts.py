"""Batched closed-loop evaluation: many episodes stepped in parallel, one policy call per step.

The benchmark studies score many models on the same evaluation seeds; stepping their episodes
side by side and asking the policy once per control step (one batched forward) is what makes
that affordable on a CPU. The episode logic mirrors the lockstep controller: ``history`` past
(state, applied action) pairs per request, the action clipped to the action bounds, the episode
ends on termination, truncation or ``max_steps`` (0: none). Reset seeds are the caller's; the
studies use ``controllers.session.EVALUATION_SEED_BASE + i``, never used for data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from controllers.safety import SafetyLimits
from mtm_robot.inference import Context, Predictor
from mtm_robot.training.baselines import Baseline
from sim import registry


class BatchPolicy(Protocol):
    """Actions for a batch of episodes from their current states and recent history."""

    history: int  # past (state, action) pairs each call wants

    def act(
        self,
        states: np.ndarray,  # (B, ds)
        history_states: list[np.ndarray],  # B arrays (k, ds), k <= history
        history_actions: list[np.ndarray],  # B arrays (k, da)
    ) -> np.ndarray:  # (B, da)
        ...


@dataclass
class MTMPolicy:
    """An MTM in one inference mode, through the same ``Predictor`` the node runs."""

    predictor: Predictor
    mode: str
    return_target: float | None = None
    history: int = 2

    def act(
        self,
        states: np.ndarray,
        history_states: list[np.ndarray],
        history_actions: list[np.ndarray],
    ) -> np.ndarray:
        contexts = [
            Context(
                self.mode,
                state,
                hs if len(hs) else None,
                ha if len(ha) else None,
                return_target=self.return_target,
            )
            for state, hs, ha in zip(states, history_states, history_actions)
        ]
        return np.stack([p.action for p in self.predictor.predict_batch(contexts)])


@dataclass
class BaselinePolicy:
    """A specialised MLP: behaviour cloning (s -> a) or return-conditioned (s, R -> a)."""

    baseline: Baseline
    return_target: float | None = None
    history: int = 0

    def __post_init__(self) -> None:
        if self.baseline.task not in ("behavior_cloning", "return_conditioned"):
            raise ValueError(f"a {self.baseline.task} baseline is not a policy")
        if self.baseline.task == "return_conditioned" and self.return_target is None:
            raise ValueError("a return-conditioned baseline needs a return target")

    def act(
        self,
        states: np.ndarray,
        history_states: list[np.ndarray],
        history_actions: list[np.ndarray],
    ) -> np.ndarray:
        if self.baseline.task == "behavior_cloning":
            return self.baseline.predict(states)
        target = np.full((len(states), 1), self.return_target, dtype=np.float32)
        return self.baseline.predict(states, target)


@dataclass
class EvalResult:
    returns: np.ndarray  # (episodes,)
    scores: np.ndarray  # normalised: 100 x (R - random) / (expert - random)
    wall_s: float


def evaluate_batched(
    policy: BatchPolicy, task: str, seeds: list[int], max_steps: int = 0
) -> EvalResult:
    """Run one episode per reset seed, all in parallel, one ``policy.act`` per control step."""
    start = time.perf_counter()
    envs = [registry.make(task) for _ in seeds]
    try:
        states = np.stack([env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)])
        states = states.astype(np.float32)
        low, high = envs[0].action_low, envs[0].action_high
        neutral = (np.asarray(low) + np.asarray(high)) / 2
        limits = [SafetyLimits(low, high) for _ in envs]
        ds, da = states.shape[1], len(np.atleast_1d(low))
        hist_s = [np.zeros((0, ds), np.float32) for _ in envs]
        hist_a = [np.zeros((0, da), np.float32) for _ in envs]
        returns = np.zeros(len(envs))
        active = list(range(len(envs)))
        step = 0
        while active and not (max_steps and step >= max_steps):
            actions = policy.act(
                states[active], [hist_s[i] for i in active], [hist_a[i] for i in active]
            )
            still = []
            for i, action in zip(active, actions):
                applied = limits[i].apply(action, None, neutral)
                next_state, reward, terminated, truncated, _ = envs[i].step(applied)
                returns[i] += reward
                if policy.history:
                    keep = policy.history
                    hist_s[i] = np.concatenate([hist_s[i], states[i][None]])[-keep:]
                    hist_a[i] = np.concatenate([hist_a[i], np.asarray(applied, np.float32)[None]])
                    hist_a[i] = hist_a[i][-keep:]
                states[i] = next_state
                if not (terminated or truncated):
                    still.append(i)
            active = still
            step += 1
    finally:
        for env in envs:
            env.close()
    scores = np.array([registry.normalized_score(task, r) for r in returns])
    return EvalResult(returns, scores, time.perf_counter() - start)
