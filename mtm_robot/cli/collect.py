"""Collect a D4RL-style dataset of simulated episodes into an episode-store folder.

    mtm-collect --task walker --recipe expert --episodes 100 --out data/w-expert
    mtm-collect --recipe medium --episodes 100 --out data/w-medium-af --drop-actions
    mtm-collect --recipe random --episodes 100 --out data/w-random --workers 2

Recipes: random, medium, medium-replay, medium-expert, expert (see sim/datasets.py). Policies
come from the package (sim/experts/<task>/: expert.safetensors, medium.safetensors,
replay/*.safetensors) unless --policy-dir points elsewhere; --sb3 PATH.zip makes a
stable-baselines3 model the expert (PPO, A2C, SAC, TD3, DDPG with MlpPolicy). The data
depend only on (task, recipe, seed, episode index): any --workers count gives identical files.
--drop-actions writes action-free episodes (no actions array at all).

Writes OUT/episode_<i>.npz per episode and OUT/summary.json (episodes, transitions, return
mean/std, normalised score, throughput). The store is built beside OUT and swapped in when
complete: with --overwrite, the old episodes are deleted only once the new ones are all written;
a failed or interrupted run leaves OUT as it was.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import NoReturn

import numpy as np
from tqdm import tqdm

from mtm_robot import atomic
from mtm_robot.cli import check_output_dir, run
from mtm_robot.errors import ConfigError
from sim.datasets import (
    RECIPES,
    CollectJob,
    collect_episodes,
    default_policy_dir,
    require_policies,
)
from sim.registry import normalized_score, resolve, task_spec


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="walker", help="registered task (default: walker)")
    parser.add_argument("--recipe", required=True, choices=RECIPES, help="dataset recipe")
    parser.add_argument("--episodes", type=int, required=True, help="episodes to collect")
    parser.add_argument("--out", required=True, help="output folder (episode store)")
    parser.add_argument(
        "--seed", type=int, default=0, help="dataset seed, any integer >= 0 (default 0)"
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--drop-actions", action="store_true", help="write action-free episodes (no actions)"
    )
    parser.add_argument(
        "--deterministic", action="store_true", help="mean policy actions instead of samples"
    )
    parser.add_argument("--policy-dir", help="folder with expert/medium/replay policies")
    parser.add_argument(
        "--sb3",
        metavar="PATH.zip",
        help="a stable-baselines3 model as the expert (recipes expert, medium-expert)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the episode files and summary already in --out first",
    )
    args = parser.parse_args(argv)
    if args.episodes <= 0 or args.workers <= 0:
        parser.error("--episodes and --workers must be positive")
    if args.seed < 0:
        parser.error(f"--seed must be a non-negative integer, got {args.seed}")
    return args


def _run_job(job: CollectJob) -> list[dict[str, object]]:
    return collect_episodes(job)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    task = resolve(args.task)
    out = Path(args.out)
    check_output_dir(out, "--out")
    require_policies(
        task,
        args.recipe,
        Path(args.policy_dir) if args.policy_dir else None,
        Path(args.sb3) if args.sb3 else None,
    )
    atomic.recover_dir(out)  # a swap a kill interrupted: put the old store back first
    existing = sorted(out.glob("episode_*.npz")) if out.exists() else []
    if existing and not args.overwrite:
        raise ConfigError(
            f"{out} already holds {len(existing)} episodes; use another --out or --overwrite"
        )
    # never mix two collections in one folder, and delete nothing until the new one is complete:
    # it is written beside --out and swapped in at the end (a failure leaves --out as it was)
    interrupted = False
    with atomic.staged_dir(out) as staging:
        _keep_other_files(out, staging)
        try:
            _collect(args, task, staging, out)
        except KeyboardInterrupt:
            interrupted = True
            _keep_interrupted(staging, out, args.episodes, replacing=bool(existing))
    return 130 if interrupted else 0


def _keep_interrupted(staging: Path, out: Path, asked: int, replacing: bool) -> None:
    """Ctrl-C: the complete episodes become --out (no summary.json), unless they would replace
    an existing store (--overwrite), which then stays whole; raises to discard them."""
    for stray in staging.glob(".episode_*.tmp"):  # a worker stopped mid-write
        stray.unlink(missing_ok=True)
    done = len(list(staging.glob("episode_*.npz")))
    if replacing or not done:
        kept = "the store already there is kept" if replacing else "nothing kept"
        print(f"\ninterrupted: {done} of {asked} episodes collected; {kept}", file=sys.stderr)
        raise KeyboardInterrupt
    print(
        f"\ninterrupted: the {done} complete episodes of {asked} kept in {out} (no summary.json)",
        file=sys.stderr,
    )


def _keep_other_files(old: Path, new: Path) -> None:
    """--overwrite replaces the episodes and summary.json; anything else in --out is kept."""
    if not old.is_dir():
        return
    for path in old.iterdir():
        if path.name == "summary.json" or path.match("episode_*.npz"):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.copytree(path, new / path.name, symlinks=True)
        else:
            shutil.copy2(path, new / path.name, follow_symlinks=False)


def _collect(args: argparse.Namespace, task: str, out: Path, shown: Path) -> None:
    """Collect into the folder ``out`` (the staging folder of ``shown``, the user's --out)."""
    policy_dir = None
    if args.recipe != "random":
        policy_dir = str(Path(args.policy_dir) if args.policy_dir else default_policy_dir(task))
    chunk = max(1, min(10, args.episodes // (4 * args.workers)))
    indices = list(range(args.episodes))
    jobs = [
        CollectJob(
            task=task,
            recipe=args.recipe,
            out_dir=str(out),
            seed=args.seed,
            indices=tuple(indices[i : i + chunk]),
            policy_dir=policy_dir,
            drop_actions=args.drop_actions,
            deterministic=args.deterministic,
            expert_file=str(Path(args.sb3).resolve()) if args.sb3 else None,
        )
        for i in range(0, len(indices), chunk)
    ]
    print(f"{task} {args.recipe}: {args.episodes} episodes, seed {args.seed}, "
          f"{args.workers} worker(s) -> {shown}")  # fmt: skip
    started = time.perf_counter()
    summaries: list[dict[str, object]] = []
    bar = tqdm(total=args.episodes, desc=f"{task} {args.recipe}", unit="episode")
    if args.workers == 1:

        def tick(_summary: dict[str, object]) -> None:
            bar.update(1)

        for job in jobs:
            summaries += collect_episodes(job, on_episode=tick)
    else:
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            for result in pool.imap_unordered(_run_job, jobs):
                summaries += result
                bar.update(len(result))
    bar.close()
    elapsed = time.perf_counter() - started
    summaries.sort(key=lambda s: int(s["index"]))  # type: ignore[call-overload]
    returns = np.array([float(s["return"]) for s in summaries])  # type: ignore[arg-type]
    steps = int(sum(int(s["steps"]) for s in summaries))  # type: ignore[call-overload]
    summary: dict[str, object] = {
        "task": task,
        "recipe": args.recipe,
        "seed": args.seed,
        "episodes": len(summaries),
        "transitions": steps,
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "actions": not args.drop_actions,
        "action_mode": "mean" if args.deterministic else "sample",
        "policy_dir": policy_dir,
        "sb3_expert": args.sb3,
        "workers": args.workers,
        "wall_s": round(elapsed, 2),
        "env_steps_per_s": round(steps / elapsed, 1),
        "env_steps_per_s_per_worker": round(steps / elapsed / args.workers, 1),
        "host": f"{platform.node()} {platform.machine()}",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    if task_spec(task).reference is not None:
        summary["normalized_score"] = normalized_score(task, float(returns.mean()))
    atomic.write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    score = summary.get("normalized_score")
    print(f"return {returns.mean():.1f} +- {returns.std():.1f}"
          + (f" (normalised {score:.1f})" if isinstance(score, float) else ""))  # fmt: skip
    print(f"{steps} transitions in {elapsed:.1f} s: {steps / elapsed:.0f} env steps/s "
          f"({steps / elapsed / args.workers:.0f} per worker)")  # fmt: skip


def entry() -> NoReturn:
    """The ``mtm-collect`` command (``python launch/collect.py`` from a checkout)."""
    run(main)
