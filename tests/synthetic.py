"""A synthetic linear system with known dynamics, for tests that need data with structure."""

from __future__ import annotations

import numpy as np

from mtm_robot.data.episodes import Episode

STATE_DIM, ACTION_DIM = 4, 2


def system(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(STATE_DIM, STATE_DIM)))
    A = 0.9 * q  # stable rotation-like dynamics
    B = rng.normal(size=(STATE_DIM, ACTION_DIM)) * 0.5
    K = rng.normal(size=(ACTION_DIM, STATE_DIM)) * 0.3
    return A, B, K


def linear_episodes(
    n: int, length: int = 40, seed: int = 0, noise: float = 0.3, action_free: int = 0
) -> list[Episode]:
    """``s' = A s + B a``, ``a = tanh(K s) + noise``, reward = -|s|^2; the last
    ``action_free`` episodes have no actions array."""
    A, B, K = system(0)
    rng = np.random.default_rng(seed)
    episodes = []
    for i in range(n):
        s = rng.normal(size=STATE_DIM)
        states, actions, rewards = [], [], []
        for _ in range(length):
            a = np.tanh(K @ s) + noise * rng.normal(size=ACTION_DIM)
            states.append(s)
            actions.append(a)
            rewards.append(-float(s @ s) / STATE_DIM)
            s = A @ s + B @ a
        episode = Episode(
            np.array(states),
            np.array(actions),
            np.array(rewards),
            meta={"task": "linear", "seed": seed, "index": i},
        )
        episodes.append(episode.without_actions() if i >= n - action_free else episode)
    return episodes
