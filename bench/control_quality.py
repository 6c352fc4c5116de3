"""Control quality of a checkpoint on walker-walk, lockstep, on evaluation seeds never used in
training or data collection (``controllers.session.EVALUATION_SEED_BASE`` + i):

* ``return_conditioned`` with the default return target;
* ``inverse_dynamics`` tracking an action-free expert demonstration (``--reference``; the
  demonstration itself comes from a collection seed, see docs/datasets.md).

Baseline in the same run: the data-generating expert on the same seeds (the score scale's 100).

  python bench/control_quality.py --checkpoint default \
      --reference data/walker/demo/episode_000000.npz
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MUJOCO_GL", "egl")

from bench.report import hardware, write_section
from controllers.session import EVALUATION_SEED_BASE, SessionConfig, run_session
from sim import registry


def expert_scores(task: str, episodes: int, seed: int) -> np.ndarray:
    from sim.experts.policy import ExpertPolicy, shipped_expert

    policy = ExpertPolicy.load(shipped_expert(task))
    env = registry.make(task)
    scores = []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
                total += reward
                done = terminated or truncated
            scores.append(registry.normalized_score(task, total))
    finally:
        env.close()
    return np.asarray(scores)


def session_scores(
    checkpoint: str,
    mode: str,
    episodes: int,
    seed: int,
    reference: str,
    run_dir: Path,
    target_fraction: float,
) -> tuple[np.ndarray, dict[str, object]]:
    config = SessionConfig(
        task="walker",
        checkpoint=checkpoint,
        episodes=episodes,
        seed=seed,
        reference=reference,
        target_fraction=target_fraction,
    )
    config.controller.mode = mode
    config.controller.realtime = False
    result = run_session(config, run_dir, progress=True)
    return np.array([s["normalized_score"] for s in result.summaries]), result.model


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--reference", required=True, help="action-free expert demonstration")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=EVALUATION_SEED_BASE)
    parser.add_argument("--target-fraction", type=float, default=1.0)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    expert = expert_scores("walker", args.episodes, args.seed)
    print(f"expert: {expert.mean():.1f} ± {expert.std():.1f}", flush=True)
    rows = []
    model: dict[str, object] = {}
    for mode in ("return_conditioned", "inverse_dynamics"):
        scores, model = session_scores(
            args.checkpoint,
            mode,
            args.episodes,
            args.seed,
            args.reference,
            tmp / mode,
            args.target_fraction,
        )
        print(f"{mode}: {scores.mean():.1f} ± {scores.std():.1f}", flush=True)
        rows.append(
            f"| MTM `{model.get('model_id')}`, {mode} | {scores.mean():.1f} ± "
            f"{scores.std():.1f} | {scores.min():.1f} |"
        )
    seeds = f"{args.seed}..{args.seed + args.episodes - 1}"
    e = f"{expert.mean():.1f} ± {expert.std():.1f} | {expert.min():.1f}"
    command = (
        f"python bench/control_quality.py --checkpoint {args.checkpoint} "
        f"--reference {args.reference} --episodes {args.episodes}"
    )
    md = f"""## Control quality, walker-walk (issue: controller)

Lockstep, {args.episodes} evaluation episodes (reset seeds {seeds},
never used in training or collection); normalised score = 100 x (R - random) / (expert - random)
with the registry's reference returns. `inverse_dynamics` tracks the action-free expert
demonstration `{args.reference}` (nearest-state indexing). Hardware: {hardware()}.

| policy | normalised score, mean ± std | worst episode |
| --- | --- | --- |
| data-generating expert (baseline) | {e} |
{chr(10).join(rows)}

Command: `{command}`
"""
    print(md)
    if not args.no_write:
        write_section("control-quality", md)


if __name__ == "__main__":
    main()
