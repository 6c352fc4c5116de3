"""Control quality of a checkpoint on a task (default walker-walk), lockstep, on evaluation
seeds never used in training or data collection (``controllers.session.EVALUATION_SEED_BASE`` + i):

* ``return_conditioned`` with the default return target;
* ``inverse_dynamics`` tracking an action-free expert demonstration (``--reference``; the
  demonstration itself comes from a collection seed, see docs/datasets.md).

Baseline in the same run: the data-generating expert on the same seeds (the score scale's 100).
Every policy is scored by the one closed-loop evaluator (``sim.evaluation``), whose episodes
are a lockstep ``sim_control`` session's (same history, bounds, reference tracking).

  python bench/control_quality.py --checkpoint default \
      --reference data/walker/demo/episode_000000.npz
  python bench/control_quality.py --task cartpole-swingup --episodes 20
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from controllers.loop import ControllerConfig
from controllers.reference import ReferenceTrajectory
from controllers.session import EVALUATION_SEED_BASE, shipped_demonstration
from mtm_robot import atomic
from mtm_robot.evaluation import MTMPolicy
from mtm_robot.report.page import hardware, write_section
from sim.evaluation import StatePolicy, evaluate

ROOT = Path(__file__).resolve().parents[1]


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


#: an episode scoring below this normalised score counts as a fall (issue 15's definition)
FALL_SCORE = 50.0


def _row(label: str, returns: np.ndarray, scores: np.ndarray) -> str:
    """One table row: return and score mean ± std, 5th percentile, worst episode, fall rate."""
    falls = int(np.sum(scores < FALL_SCORE))
    return (
        f"| {label} | {returns.mean():.1f} ± {returns.std():.1f} | "
        f"{np.percentile(returns, 5):.1f} | {returns.min():.1f} | "
        f"{scores.mean():.1f} ± {scores.std():.1f} | {scores.min():.1f} | "
        f"{falls}/{len(scores)} |"
    )


def main() -> None:
    from mtm_robot.checkpoint_meta import resolve_checkpoint_path
    from sim.registry import normalized_score, resolve

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="walker", help="registered task (default: walker)")
    parser.add_argument(
        "--checkpoint", default="default", help="checkpoint (default: the task's shipped model)"
    )
    parser.add_argument(
        "--reference",
        default="",
        help="action-free expert demonstration for inverse_dynamics (default: the task's "
        "shipped one; none: inverse_dynamics is not run)",
    )
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=EVALUATION_SEED_BASE)
    parser.add_argument("--target-fraction", type=float, default=1.0)
    parser.add_argument(
        "--max-steps", type=int, default=0, help="cut each episode here (0: the whole episode)"
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    task = resolve(args.task)
    checkpoint = str(resolve_checkpoint_path(args.checkpoint, task))
    reference = args.reference
    if not reference:
        shipped = shipped_demonstration(task)
        reference = str(shipped.relative_to(ROOT)) if shipped is not None else ""
    modes = ["return_conditioned"] + (["inverse_dynamics"] if reference else [])

    def returns_of(scores: np.ndarray) -> np.ndarray:  # the score is affine in the return
        slope = normalized_score(task, 1.0) - normalized_score(task, 0.0)
        return (scores - normalized_score(task, 0.0)) / slope

    expert = expert_scores(task, args.episodes, args.seed, args.max_steps)
    print(f"expert: {expert.mean():.1f} ± {expert.std():.1f}", flush=True)
    rows = [_row("data-generating expert (baseline)", returns_of(expert), expert)]
    per_episode: dict[str, list[float]] = {"expert": [round(float(x), 3) for x in expert]}
    for mode in modes:
        scores, model_id = mtm_scores(
            checkpoint,
            mode,
            task,
            args.episodes,
            args.seed,
            reference,
            args.target_fraction,
            args.max_steps,
        )
        print(f"{mode}: {scores.mean():.1f} ± {scores.std():.1f}", flush=True)
        rows.append(_row(f"MTM `{model_id}`, {mode}", returns_of(scores), scores))
        per_episode[f"{model_id} {mode}"] = [round(float(x), 3) for x in scores]
    seeds = f"{args.seed}..{args.seed + args.episodes - 1}"
    command = (
        f"python bench/control_quality.py --task {task} --episodes {args.episodes}"
        + (f" --checkpoint {args.checkpoint}" if args.checkpoint != "default" else "")
        + (f" --reference {args.reference}" if args.reference else "")
        + (f" --max-steps {args.max_steps}" if args.max_steps else "")
        + (f" --seed {args.seed}" if args.seed != EVALUATION_SEED_BASE else "")
    )
    tracking = (
        f" `inverse_dynamics` tracks the action-free expert demonstration `{reference}` "
        "(nearest-state indexing)."
        if reference
        else ""
    )
    md = f"""## Control quality, {task} (issue: controller)

Lockstep, {args.episodes} evaluation episodes (reset seeds {seeds},
never used in training, collection or choosing anything); normalised score =
100 x (R - random) / (expert - random) with the registry's reference returns; a fall is an
episode scoring below {FALL_SCORE:.0f}.{tracking}
Checkpoint `{checkpoint if args.checkpoint != "default" else f"mtm_robot/checkpoints/{task}/"}`.
Hardware: {hardware()}.

| policy | return, mean ± std | 5th pct | worst | score, mean ± std | worst score | falls |
| --- | ---: | ---: | ---: | ---: | ---: | ---: |
{chr(10).join(rows)}

Command: `{command}`
"""
    print(md)
    if not args.no_write:
        write_section("control-quality" if task == "walker-walk" else f"control-quality-{task}", md)
        results = {
            "task": task,
            "checkpoint": checkpoint,
            "seeds": [args.seed, args.seed + args.episodes - 1],
            "max_steps": args.max_steps,
            "normalized_scores": per_episode,
            "command": command,
            "hardware": hardware(),
        }
        path = ROOT / "docs" / "results" / f"control_quality_{task}.json"
        atomic.write_text(path, json.dumps(results, indent=1) + "\n")
        print(f"per-episode scores: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
