"""Closed-loop evaluation: many episodes stepped in parallel, one batched policy call per step.

The one evaluator of the project: finetuning's before/after scores, expert training and
shipping, the evaluation report and the control-quality benchmark all score a policy here.
It mirrors the lockstep controller (``controllers.loop``, realtime off): each call sees the
current state and the last ``history`` (state, applied action) pairs, the action is checked and
clipped to the action bounds before it is applied (a non-finite or misshapen action is replaced
by the neutral action, as ``controllers.safety.SafetyLimits`` does without a rate limit), and an
episode ends on termination, truncation or ``max_steps`` (0: none). So a policy scores the same
here as in a lockstep ``sim_control`` session (``tests/data_loop/test_heteromodal.py``).

Torch-free and model-free: the policy is any :class:`BatchPolicy` (an MTM through
``mtm_robot.evaluation.MTMPolicy``, an MLP baseline, an expert's ``act`` through
:class:`StatePolicy`). Reset seeds are the caller's; evaluation uses
``controllers.session.EVALUATION_SEED_BASE + i`` (never used for data).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sim import registry


class BatchPolicy(Protocol):
    """Actions for a batch of running episodes.

    ``episodes`` are the indices (into the evaluation's seed list) of the episodes asking,
    ``step`` the control step they are at (the same for all); ``history_states`` and
    ``history_actions`` hold each one's last ``k <= history`` states and applied actions.
    """

    @property
    def history(self) -> int: ...  # past (state, action) pairs each call wants

    def act(
        self,
        episodes: Sequence[int],
        step: int,
        states: np.ndarray,  # (B, ds)
        history_states: Sequence[np.ndarray],  # B arrays (k, ds)
        history_actions: Sequence[np.ndarray],  # B arrays (k, da)
    ) -> np.ndarray:  # (B, da)
        ...


@dataclass
class StatePolicy:
    """A per-observation policy ``act(state) -> action`` (an expert, a SAC actor) as a batch."""

    act_one: Callable[[np.ndarray], np.ndarray]
    history: int = 0

    def act(
        self,
        episodes: Sequence[int],
        step: int,
        states: np.ndarray,
        history_states: Sequence[np.ndarray],
        history_actions: Sequence[np.ndarray],
    ) -> np.ndarray:
        return np.stack([np.asarray(self.act_one(state)) for state in states])


@dataclass
class EvalResult:
    returns: np.ndarray  # (episodes,) undiscounted
    scores: np.ndarray  # normalised: 100 x (R - random) / (expert - random); NaN without one
    steps: np.ndarray  # (episodes,) control steps each ran
    wall_s: float
    rejected_actions: int = 0  # non-finite or misshapen actions replaced by the neutral one
    clipped_actions: int = 0  # actions clipped to the bounds
    seeds: list[int] = field(default_factory=list)

    @property
    def mean_score(self) -> float:
        return float(self.scores.mean())


def evaluate(
    policy: BatchPolicy, task: str, seeds: Sequence[int], max_steps: int = 0
) -> EvalResult:
    """Run one episode of ``task`` per reset seed, all in parallel, one ``policy.act`` per step."""
    if not seeds:
        raise ValueError("evaluate needs at least one reset seed, got none")
    if max_steps < 0:
        raise ValueError(f"max_steps must be >= 0 (0: until the episode ends), got {max_steps}")
    start = time.perf_counter()
    spec = registry.task_spec(task)  # an unknown task fails here, naming the known ones
    envs = [spec.make() for _ in seeds]
    rejected = clipped = 0
    try:
        # the observations as the environment gives them (a per-state policy sees exactly those)
        states = np.stack([env.reset(seed=seed)[0] for env, seed in zip(envs, seeds)])
        low = np.asarray(envs[0].action_low, np.float64)
        high = np.asarray(envs[0].action_high, np.float64)
        neutral = (low + high) / 2
        ds, da = states.shape[1], low.size
        hist_s = [np.zeros((0, ds), states.dtype) for _ in envs]
        hist_a = [np.zeros((0, da), np.float32) for _ in envs]
        returns = np.zeros(len(envs))
        steps = np.zeros(len(envs), dtype=np.int64)
        active = list(range(len(envs)))
        step = 0
        while active and not (max_steps and step >= max_steps):
            actions = policy.act(
                active, step, states[active], [hist_s[i] for i in active],
                [hist_a[i] for i in active],
            )  # fmt: skip
            still = []
            for i, action in zip(active, actions):
                a = np.asarray(action, dtype=np.float64)
                if a.shape != low.shape or not np.all(np.isfinite(a)):
                    rejected += 1
                    a = neutral
                applied = np.clip(a, low, high)
                clipped += bool(np.any(applied != a))
                next_state, reward, terminated, truncated, _ = envs[i].step(applied)
                returns[i] += reward
                steps[i] += 1
                if policy.history:
                    keep = policy.history
                    hist_s[i] = np.concatenate([hist_s[i], states[i][None]])[-keep:]
                    hist_a[i] = np.concatenate([hist_a[i], applied.astype(np.float32)[None]])
                    hist_a[i] = hist_a[i][-keep:]
                states[i] = next_state
                if not (terminated or truncated):
                    still.append(i)
            active = still
            step += 1
    finally:
        for env in envs:
            env.close()
    has_reference = spec.reference is not None
    scores = np.array(
        [registry.normalized_score(task, r) if has_reference else np.nan for r in returns]
    )
    return EvalResult(
        returns, scores, steps, time.perf_counter() - start, rejected, clipped, list(seeds)
    )
