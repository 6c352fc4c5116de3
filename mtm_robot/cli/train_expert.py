"""Train a SAC expert on a state-based task, evaluate it, and ship expert/medium policies.

Train (resumes automatically when --out already holds a checkpoint of the same config):

    mtm-train-expert --task walker --steps 500000 --out runs/walker-walk-sac
    mtm-train-expert --config expert_walker --set sac.actor_lr=1e-3

Evaluate an actor file on 20 seeds never used in training (prints the normalised score):

    mtm-train-expert --evaluate runs/walker-walk-sac/snapshots/step_0500000.safetensors

Ship the best snapshot as the expert, the one nearest half its return as "medium", and the
snapshots up to the medium one (for the medium-replay recipe) into sim/experts/<task>/ (expert
and medium re-evaluated on unseen seeds, numbers written beside them):

    mtm-train-expert --ship runs/walker-walk-sac

The run directory holds config.json/config.yaml, metrics.jsonl, learning_curve.png,
checkpoint/ (resumable) and snapshots/ (an actor file per evaluation); see
sim/experts/trainer.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import NoReturn

from mtm_robot.cli import check_output_dir, run
from mtm_robot.config import load_config, save_config
from mtm_robot.hardware import describe
from sim.datasets import default_policy_dir
from sim.evaluation import StatePolicy, evaluate
from sim.experts.policy import ExpertPolicy
from sim.registry import normalized_score, task_spec


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="YAML file of TrainConfig fields (e.g. expert_walker)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. --set sac.batch_size=512 (repeatable)",
    )
    parser.add_argument(
        "--task", help="task to train on (default walker-walk); shortcut for --set task=..."
    )
    parser.add_argument(
        "--steps", type=int, help="total environment steps; shortcut for --set steps=N"
    )
    parser.add_argument("--seed", type=int, help="training seed; shortcut for --set seed=S")
    parser.add_argument("--out", help="run directory (created; resumed if it holds a checkpoint)")
    parser.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    parser.add_argument(
        "--report", metavar="RUN_DIR", help="print a markdown progress table of a run and exit"
    )
    parser.add_argument("--evaluate", metavar="ACTOR", help="evaluate an actor file and exit")
    parser.add_argument("--episodes", type=int, default=20, help="episodes for --evaluate/--ship")
    parser.add_argument(
        "--ship",
        metavar="RUN_DIR",
        help="copy expert + medium snapshots of a run into sim/experts/<task>/",
    )
    parser.add_argument(
        "--ship-to", default=None, help="destination folder for --ship (default: the package)"
    )
    parser.add_argument(
        "--replay-every",
        type=int,
        default=0,
        metavar="STEPS",
        help="--ship: keep only the replay snapshots at multiples of STEPS (and the medium one), "
        "to keep the package small (default 0: every snapshot)",
    )
    return parser.parse_args(argv)


def evaluate_actor(path: Path, episodes: int, first_seed: int | None = None) -> dict[str, float]:
    """Mean/std return and normalised score of an actor file (default: unseen test seeds,
    from ``sim.experts.trainer.TEST_SEED_BASE``)."""
    from sim.experts.trainer import TEST_SEED_BASE  # torch: after the arguments are parsed

    first_seed = TEST_SEED_BASE if first_seed is None else first_seed
    policy = ExpertPolicy.load(path)
    task = policy.meta["task"]
    seeds = [first_seed + i for i in range(episodes)]
    evaluation = evaluate(StatePolicy(policy.act), task, seeds)
    result = {
        "return_mean": float(evaluation.returns.mean()),
        "return_std": float(evaluation.returns.std()),
        "episodes": episodes,
        "first_seed": first_seed,
    }
    if task_spec(task).reference is not None:
        result["normalized_score"] = normalized_score(task, result["return_mean"])
    return result


def ship(run_dir: Path, episodes: int, dest_root: Path | None, replay_every: int = 0) -> None:
    from sim.experts.trainer import VALIDATION_SEED_BASE

    snapshots = sorted((run_dir / "snapshots").glob("step_*.safetensors"))
    if not snapshots:
        sys.exit(f"no snapshots in {run_dir / 'snapshots'}")
    in_training = {p: ExpertPolicy.load(p).meta["return_mean"] for p in snapshots}
    # pick the expert on validation seeds (neither training nor test) among the top 3
    candidates = sorted(snapshots, key=lambda p: in_training[p])[-3:]
    validation = {p: evaluate_actor(p, episodes, VALIDATION_SEED_BASE) for p in candidates}
    for p in candidates:
        print(f"candidate {p.name}: in-training {in_training[p]:.1f}, "
              f"validation {validation[p]['return_mean']:.1f}")  # fmt: skip
    best = max(candidates, key=lambda p: validation[p]["return_mean"])
    expert_eval = evaluate_actor(best, episodes)
    print(f"expert {best.name}: {json.dumps(expert_eval)}")
    half = expert_eval["return_mean"] / 2.0
    medium = min(snapshots, key=lambda p: abs(in_training[p] - half))
    medium_eval = evaluate_actor(medium, episodes)
    print(f"medium {medium.name}: {json.dumps(medium_eval)}")
    task = ExpertPolicy.load(best).meta["task"]
    dest = dest_root or default_policy_dir(task)  # the package's sim/experts/<task>/
    dest.mkdir(parents=True, exist_ok=True)
    run = _run_provenance(run_dir)
    for level, src, result in (("expert", best, expert_eval), ("medium", medium, medium_eval)):
        shutil.copyfile(src, dest / f"{level}.safetensors")
        info = {"source": str(src), "test_eval": result, "in_training_eval": in_training[src],
                "run": run}  # fmt: skip
        (dest / f"{level}.json").write_text(json.dumps(info, indent=2) + "\n")
    # medium-replay: every snapshot up to (and including) the medium one, in training order
    replay = dest / "replay"
    shutil.rmtree(replay, ignore_errors=True)
    replay.mkdir()
    kept = [
        src
        for src in snapshots[: snapshots.index(medium) + 1]
        if not replay_every or src == medium or _snapshot_step(src) % replay_every == 0
    ]
    for src in kept:
        shutil.copyfile(src, replay / src.name)
    print(f"shipped expert, medium and {len(kept)} replay snapshots to {dest}")


def _snapshot_step(path: Path) -> int:
    return int(path.stem.split("_")[1])


def _run_provenance(run_dir: Path) -> dict[str, object]:
    """Where shipped policies come from: the run's config, its steps and wall time so far,
    and the machine that ships them (the run's own, when shipped where it trained)."""
    progress = run_dir / "checkpoint" / "progress.json"
    done = json.loads(progress.read_text()) if progress.exists() else {}
    config = run_dir / "config.json"
    return {
        "dir": str(run_dir),
        "config": json.loads(config.read_text()) if config.exists() else None,
        "steps_done": done.get("step"),
        "wall_s": round(float(done["wall_s"]), 1) if "wall_s" in done else None,
        "hardware": describe(),
    }


def report(run_dir: Path, every: int = 50_000) -> None:
    """Markdown table of the in-training evaluations, with the recent rate and an ETA."""
    from sim.experts.trainer import seconds_to_hms

    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["kind"] == "eval"]
    if not evals:
        sys.exit(f"{run_dir}: no evaluations yet")
    total = json.loads((run_dir / "config.json").read_text())["steps"]
    best = max(evals, key=lambda r: r["return_mean"])
    print("| env steps | wall time | eval return (mean +- std) |")
    print("| ---: | ---: | ---: |")
    for r in evals:
        if r["step"] % every == 0 or r is best or r is evals[-1] or r is evals[0]:
            mark = " (best)" if r is best else ""
            print(f"| {r['step']:,} | {r['wall_s'] / 60:.0f} min | "
                  f"{r['return_mean']:.1f} +- {r['return_std']:.1f}{mark} |")  # fmt: skip
    if len(evals) >= 2 and evals[-1]["step"] < total:
        a, b = evals[max(0, len(evals) - 4)], evals[-1]
        rate = (b["step"] - a["step"]) / max(b["wall_s"] - a["wall_s"], 1e-9)
        eta = (total - b["step"]) / rate
        print(f"\nrecent rate {rate:.1f} steps/s; {total - b['step']:,} steps left, "
              f"about {seconds_to_hms(eta)} of run time")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        report(Path(args.report))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.evaluate:
        result = evaluate_actor(Path(args.evaluate), args.episodes)
        print(json.dumps(result, indent=2))
        return 0
    if args.ship:
        dest = Path(args.ship_to) if args.ship_to else None
        ship(Path(args.ship), args.episodes, dest, args.replay_every)
        return 0
    # torch loads after the arguments are parsed: --help and a bad flag answer at once
    from sim.experts.trainer import TrainConfig, Trainer, seconds_to_hms

    overrides = list(args.set)
    for name in ("task", "steps", "seed"):
        if getattr(args, name) is not None:
            overrides.append(f"{name}={getattr(args, name)}")
    config = load_config(TrainConfig, args.config, overrides)
    out = Path(args.out or f"runs/{config.task}-sac-seed{config.seed}")
    check_output_dir(out, "--out")
    print(f"task {config.task}, {config.steps} steps, seed {config.seed}, out {out}")
    print(f"host {platform.node()} ({describe()}), python {platform.python_version()}")
    trainer = Trainer(config, out, progress=not args.no_progress)
    started = time.perf_counter()
    try:
        last = trainer.train()
    finally:
        trainer.close()
    save_config(config, out / "config.yaml")
    done = trainer.step - trainer.start_step
    elapsed = time.perf_counter() - started
    rate = done / elapsed if elapsed > 0 else float("nan")
    print(f"{done} steps in {seconds_to_hms(elapsed)} ({rate:.1f} steps/s)")
    print(f"run wall time so far {seconds_to_hms(trainer.wall_s)}")
    if last:
        score = last.get("normalized_score", float("nan"))
        mean, std = last["return_mean"], last["return_std"]
        print(f"last eval at step {last['step']}: return {mean:.1f} +- {std:.1f}")
        print(f"normalised score {score:.1f}")
        print(f"learning curve: {out / 'learning_curve.png'}")
    if trainer.step < config.steps:
        print(f"stopped at step {trainer.step}; rerun the same command to resume")
    return 0


def entry() -> NoReturn:
    """The ``mtm-train-expert`` command (``python launch/train_expert.py`` from a checkout)."""
    run(main)
