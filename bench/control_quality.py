"""Control quality of a checkpoint on walker-walk, lockstep, on evaluation seeds never used in
training or data collection (``controllers.session.EVALUATION_SEED_BASE`` + i):

* ``return_conditioned`` with the default return target;
* ``inverse_dynamics`` tracking an action-free expert demonstration (``--reference``; the
  demonstration itself comes from a collection seed, see docs/datasets.md).

Baseline in the same run: the data-generating expert on the same seeds (the score scale's 100).
Every policy is scored by the one closed-loop evaluator (``sim.evaluation``), whose episodes
are a lockstep ``sim_control`` session's (same history, bounds, reference tracking).

  python bench/control_quality.py --checkpoint default \
      --reference data/walker/demo/episode_000000.npz
"""

from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from controllers.loop import ControllerConfig
from controllers.reference import ReferenceTrajectory
from controllers.session import EVALUATION_SEED_BASE
from mtm_robot.evaluation import MTMPolicy
from mtm_robot.report.page import hardware, write_section
from sim.evaluation import StatePolicy, evaluate


def expert_scores(task: str, episodes: int, seed: int, max_steps: int = 0) -> np.ndarray:
    """Normalised scores of the task's shipped data-generating expert."""
    from sim.experts.policy import ExpertPolicy, shipped_expert

    policy = StatePolicy(ExpertPolicy.load(shipped_expert(task)).act)
    return evaluate(policy, task, [seed + i for i in range(episodes)], max_steps).scores


def mtm_scores(
    checkpoint: str,
    mode: str,
    task: str,
    episodes: int,
    seed: int,
    reference: str,
    target_fraction: float,
    max_steps: int = 0,
) -> tuple[np.ndarray, str]:
    """Normalised scores and model id of a checkpoint in one mode, in lockstep episodes;
    ``inverse_dynamics`` tracks ``reference`` with the controller's defaults."""
    control = ControllerConfig(mode=mode)
    future_states = None
    if mode == "inverse_dynamics":
        references: dict[int, ReferenceTrajectory] = {}

        def future_states(episode: int, step: int, state: np.ndarray) -> np.ndarray:
            if episode not in references:  # one tracker per episode, as reset per episode
                references[episode] = ReferenceTrajectory.from_file(reference)
            return references[episode].desired(step, state, control.future_states)

    policy = MTMPolicy.from_checkpoint(
        checkpoint, mode, target_fraction, future_states=future_states
    )
    policy.history = control.history
    result = evaluate(policy, task, [seed + i for i in range(episodes)], max_steps)
    return result.scores, policy.model_id


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--reference", required=True, help="action-free expert demonstration")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=EVALUATION_SEED_BASE)
    parser.add_argument("--target-fraction", type=float, default=1.0)
    parser.add_argument(
        "--max-steps", type=int, default=0, help="cut each episode here (0: the whole episode)"
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    expert = expert_scores("walker", args.episodes, args.seed, args.max_steps)
    print(f"expert: {expert.mean():.1f} ± {expert.std():.1f}", flush=True)
    rows = []
    for mode in ("return_conditioned", "inverse_dynamics"):
        scores, model_id = mtm_scores(
            args.checkpoint,
            mode,
            "walker",
            args.episodes,
            args.seed,
            args.reference,
            args.target_fraction,
            args.max_steps,
        )
        print(f"{mode}: {scores.mean():.1f} ± {scores.std():.1f}", flush=True)
        rows.append(
            f"| MTM `{model_id}`, {mode} | {scores.mean():.1f} ± "
            f"{scores.std():.1f} | {scores.min():.1f} |"
        )
    seeds = f"{args.seed}..{args.seed + args.episodes - 1}"
    e = f"{expert.mean():.1f} ± {expert.std():.1f} | {expert.min():.1f}"
    command = (
        f"python bench/control_quality.py --checkpoint {args.checkpoint} "
        f"--reference {args.reference} --episodes {args.episodes}"
        + (f" --max-steps {args.max_steps}" if args.max_steps else "")
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
