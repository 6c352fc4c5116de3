"""The paper's heteromodal experiment on walker-walk (reference 5.3): does action-free data help?

Two MTMs, trained from scratch with the same config, steps and seed:

* ``labelled-only``: the first ``--labelled`` expert episodes, with actions;
* ``heteromodal``: the same labelled episodes plus the other expert episodes with their actions
  dropped (half the batches state-only, reference 5.3).

Each is evaluated in ``return_conditioned`` and ``two_stage`` mode on ``--eval-seeds`` walker
episodes (reset seeds ``controllers.session.EVALUATION_SEED_BASE + i``, never used for data),
with the controller's context (2 steps of history, actions clipped to the bounds, return target
at the top of the training return range, as ``launch/sim_control.py`` picks it). Evaluation runs
in-process: the episodes step in parallel and their contexts go through one
``Predictor.predict_batch`` per step, the same layout/mask/normalisation code the node runs
(``tests/data_loop/test_heteromodal.py`` checks it against a lockstep session). Baseline in the
same run: the data-generating expert on the same seeds.

Training resumes from ``OUT/<arm>/checkpoints/latest``: rerunning the same command after an
interruption continues it, and a finished arm is only re-evaluated.

  python bench/heteromodal.py --data /work/data/walker/expert --labelled 2 --steps 6000 \\
      --out runs/heteromodal
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("MUJOCO_GL", "egl")

import torch

from bench.report import hardware, write_section
from bench.rollouts import MTMPolicy, evaluate_batched
from controllers.session import EVALUATION_SEED_BASE, SessionConfig, resolve_target
from mtm_robot.config import load_config
from mtm_robot.data.episodes import Episode, load_episodes
from mtm_robot.inference import Predictor
from mtm_robot.training.checkpoint import load_checkpoint
from mtm_robot.training.train import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
MODES = ("return_conditioned", "two_stage")
ARMS = ("labelled-only", "heteromodal")


def split_expert_data(
    episodes: list[Episode], labelled: int, extra_action_free: list[Episode]
) -> dict[str, list[Episode]]:
    """The two arms' training sets: the first ``labelled`` episodes with actions, and the
    same plus every other episode (and the extra demos) without actions."""
    if not 0 < labelled < len(episodes):
        raise SystemExit(f"--labelled must be in [1, {len(episodes) - 1}], got {labelled}")
    with_actions = [e for e in episodes if e.actions is not None]
    if len(with_actions) < labelled:
        raise SystemExit(f"only {len(with_actions)} episodes carry actions; need {labelled}")
    chosen = episodes[:labelled]
    rest = [e.without_actions() for e in episodes[labelled:]]
    rest += [e if e.actions is None else e.without_actions() for e in extra_action_free]
    return {"labelled-only": chosen, "heteromodal": chosen + rest}


def train_arm(
    arm: str, episodes: list[Episode], args: argparse.Namespace, out: Path
) -> tuple[Path, float]:
    overrides = [
        f"steps={args.steps}",
        f"optim.warmup_steps={min(1000, max(1, args.steps // 10))}",
        f"eval_every={args.steps}",
        f"checkpoint_every={max(1, min(args.steps, 1000))}",
        f"batch_size={args.batch_size}",
        f"seed={args.train_seed}",
        f"threads={args.threads}",
        "data.validation_fraction=0.0",  # a 2-episode labelled set cannot spare one
        f"data.labelled_fraction={args.labelled_fraction}",
        f"model_id=mtm-walker-{arm}",
        "task=walker-walk",
        *args.set,
    ]
    config = load_config(TrainConfig, args.config, overrides)
    provenance = {"command": " ".join(sys.argv), "bench": "heteromodal", "arm": arm}
    start = time.perf_counter()
    trainer = Trainer(config, episodes, out / arm, provenance)
    already = trainer.step
    trainer.run(progress=not args.no_progress)
    wall = time.perf_counter() - start
    trained = config.steps - already
    print(f"{arm}: trained {trained} steps in {wall:.0f} s "
          f"({wall / max(1, trained):.3f} s/step)", flush=True)  # fmt: skip
    return out / arm / "checkpoints" / "latest", wall / max(1, trained) if trained else float("nan")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", type=Path, default=Path("/work/data/walker/expert"),
                   help="expert episode store (with actions)")  # fmt: skip
    p.add_argument("--extra-action-free", type=Path, action="append", default=[],
                   help="more action-free demos for the heteromodal arm (repeatable)")  # fmt: skip
    p.add_argument("--labelled", type=int, default=2, help="labelled episodes (default 2)")
    p.add_argument("--config", type=Path, default=ROOT / "launch/configs/mtm_walker.yaml")
    p.add_argument("--steps", type=int, default=6000, help="training steps per arm")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--labelled-fraction", type=float, default=0.5,
                   help="heteromodal arm: labelled share of batches (5.3: 0.5)")  # fmt: skip
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--eval-seeds", type=int, default=20, help="evaluation episodes per mode")
    p.add_argument("--max-steps", type=int, default=0, help="cut evaluation episodes (smoke)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="training config override")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("runs/heteromodal"))
    p.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite the docs section from OUT/results.json, no training")  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        saved = json.loads((args.out / "results.json").read_text())
        argv_run = saved["argv"]
        md = report(parse_args(argv_run[1:]), saved["arms"], np.asarray(saved["expert"]), argv_run)
        print(md)
        if not args.no_write:
            write_section("heteromodal", md)
        return 0
    torch.set_num_threads(args.threads)
    task = "walker-walk"
    episodes = load_episodes(args.data)
    extra = [e for d in args.extra_action_free for e in load_episodes(d)]
    arms = split_expert_data(episodes, args.labelled, extra)
    seeds = [EVALUATION_SEED_BASE + i for i in range(args.eval_seeds)]
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, object]] = {}
    for arm in ARMS:
        path, s_per_step = train_arm(arm, arms[arm], args, args.out)
        checkpoint = load_checkpoint(path)
        predictor = Predictor.from_model(checkpoint.model, checkpoint.normalizer)
        target = resolve_target(SessionConfig(), checkpoint.metadata)
        row: dict[str, object] = {
            "labelled_episodes": sum(e.actions is not None for e in arms[arm]),
            "action_free_episodes": sum(e.actions is None for e in arms[arm]),
            "s_per_step": s_per_step,
            "return_target": target,
            "model_id": checkpoint.model_id,
        }
        for mode in MODES:
            policy = MTMPolicy(predictor, mode, target)
            r = evaluate_batched(policy, task, seeds, max_steps=args.max_steps)
            print(f"{arm} {mode}: score {r.scores.mean():.1f} ± {r.scores.std():.1f} "
                  f"({len(seeds)} episodes, {r.wall_s:.0f} s)", flush=True)  # fmt: skip
            row[mode] = r.scores.tolist()
        results[arm] = row
    from bench.control_quality import expert_scores

    expert = expert_scores(task, args.eval_seeds, EVALUATION_SEED_BASE) if not args.max_steps \
        else np.array([float("nan")])  # fmt: skip
    (args.out / "results.json").write_text(
        json.dumps({"arms": results, "expert": expert.tolist(), "argv": sys.argv}, indent=2)
    )
    md = report(args, results, expert, sys.argv)
    print(md)
    if not args.no_write:
        write_section("heteromodal", md)
    return 0


def _cell(values: object) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.1f} ± {a.std():.1f}"


def report(
    args: argparse.Namespace,
    results: dict[str, dict[str, object]],
    expert: np.ndarray,
    argv: list[str],
) -> str:
    rows = []
    for arm in ARMS:
        r = results[arm]
        rows.append(
            f"| {arm} | {r['labelled_episodes']} | {r['action_free_episodes']} | "
            f"{_cell(r['return_conditioned'])} | {_cell(r['two_stage'])} |"
        )
    gains = {
        mode: float(np.mean(np.asarray(results["heteromodal"][mode], dtype=float)))
        - float(np.mean(np.asarray(results["labelled-only"][mode], dtype=float)))
        for mode in MODES
    }
    best = max(gains.values())
    verdict = "met" if best >= 10 else "not met"
    command = " ".join(["python", "bench/heteromodal.py", *argv[1:]])
    speeds = []
    for arm in ARMS:
        speed = results[arm].get("s_per_step")
        if isinstance(speed, float) and speed == speed:
            speeds.append(f"{arm} {speed:.3f} s/step")
    speed_text = ", ".join(speeds) or "n/a (resumed)"
    overrides = ", ".join(f"`{o}`" for o in args.set) or "none"
    return f"""## Heteromodal training, walker-walk (issue 6)

Labelled-only vs heteromodal (reference 5.3): the first {args.labelled} episodes of
`{args.data}` with actions, against the same plus the other episodes with their actions
dropped (half the batches state-only). Same config (`{args.config.name}`, overrides:
{overrides}), {args.steps} steps each at batch {args.batch_size}, training seed
{args.train_seed}; one training seed only.
Evaluation: {args.eval_seeds} episodes per mode (reset seeds {EVALUATION_SEED_BASE}..
{EVALUATION_SEED_BASE + args.eval_seeds - 1}), in-process batched lockstep with the
controller's context; return target = top of each model's training return range; normalised
score = 100 x (R - random) / (expert - random). Mean ± std over episodes.

| arm | labelled episodes | action-free episodes | return_conditioned | two_stage |
| --- | --- | --- | --- | --- |
{chr(10).join(rows)}
| data-generating expert (baseline, mean action) | | | {_cell(expert)} | |

Gain of heteromodal over labelled-only: return_conditioned {gains["return_conditioned"]:+.1f},
two_stage {gains["two_stage"]:+.1f} points. Goal (at least +10 points): **{verdict}**.
Training wall time per step (shared machine; other jobs ran at the same time): {speed_text}.
Hardware: {hardware()}.

Command: `{command}`
"""


if __name__ == "__main__":
    sys.exit(main())
