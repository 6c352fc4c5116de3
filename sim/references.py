"""Measure the random-policy reference return of tasks: ``python -m sim.references``.

Uniform-random actions in the action bounds, one episode per seed (0..episodes-1), the RNG of
episode ``i`` seeded with ``i``. Prints one line per task; the registry's numbers come from it.
"""

from __future__ import annotations

import argparse

import numpy as np

from sim.registry import known_tasks, make


def random_returns(task: str, episodes: int = 20) -> np.ndarray:
    """Returns of ``episodes`` uniform-random episodes (seeds 0..episodes-1)."""
    returns = np.zeros(episodes)
    with make(task) as env:
        for seed in range(episodes):
            rng = np.random.default_rng(seed)
            env.reset(seed=seed)
            done = False
            while not done:
                action = rng.uniform(env.action_low, env.action_high)
                _, reward, terminated, truncated, _ = env.step(action)
                returns[seed] += reward
                done = terminated or truncated
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tasks", nargs="*", help="tasks to measure (default: all registered)")
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task")
    args = parser.parse_args()
    for task in args.tasks or known_tasks():
        returns = random_returns(task, args.episodes)
        print(f"{task:20s} random return mean {returns.mean():9.3f} std {returns.std():8.3f}")


if __name__ == "__main__":
    main()
