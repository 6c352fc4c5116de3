"""Finetune a checkpoint on new episodes, some of them action-free, and hot-swap the result.

The run starts from the checkpoint's weights, its normaliser (unchanged, so the served model's
units stay the same) and its resolved training config; action-free episodes train only the
modalities they have (reference 5.3). After training it evaluates the checkpoint before and
after in the ``return_conditioned`` and ``two_stage`` modes (lockstep, a few episodes) and,
with --push, tells a running node to load the new checkpoint (no request is dropped).

It checkpoints every 500 steps or 2 minutes, whichever comes first (--set checkpoint_every=N,
--set checkpoint_every_s=S); the same command started again resumes from the newest checkpoint
in --out and says "resumed from step N".

Examples:
  mtm-finetune --checkpoint default --data runs/demos --action-free --out runs/ft
  mtm-finetune --checkpoint default --data data/walker/expert-2pct \\
      --data runs/demos --action-free --out runs/ft --push tcp://127.0.0.1:5555
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NoReturn

import tyro

os.environ.setdefault("MUJOCO_GL", "egl")

from mtm_robot.cli import check_output_dir, run, run_directory
from mtm_robot.cli.settings import Overrides, parse_command
from mtm_robot.config import apply_overrides, at_least, from_dict, positive
from mtm_robot.data.importers import add_data_arguments, load_data_arguments
from mtm_robot.errors import CheckpointError


@dataclass
class FinetuneCommand:
    """The arguments of ``mtm-finetune`` (``--data``/``--action-free``: see the description)."""

    checkpoint: str
    """checkpoint directory, or 'default'"""
    out: Path
    """run directory (the same command again resumes from its newest checkpoint)"""
    steps: int = 2000
    """finetuning steps"""
    lr: float = 1e-4
    """peak learning rate"""
    push: str = ""
    """node (tcp://host:port) to hot-swap the result into (its --allow-reload DIR holds --out)"""
    eval_episodes: int = 3
    """lockstep episodes per mode before and after (0: skip)"""
    set: Overrides = field(default_factory=list)
    """override a training config value, e.g. --set batch_size=128"""
    progress: bool = True
    """a progress bar (--no-progress: none)"""
    data: tyro.conf.Suppress[list[Path]] = field(default_factory=list)
    action_free: tyro.conf.Suppress[frozenset[int]] = frozenset()

    def __post_init__(self) -> None:
        at_least(1, steps=self.steps)
        at_least(0, eval_episodes=self.eval_episodes)
        positive(lr=self.lr)


DATA_HELP = """
Data: --data PATH [--action-free], repeatable: an episode-store directory, a D4RL-style .hdf5 or
a Minari dataset; --action-free after a --data drops that source's actions.
"""


def parse_args(argv: list[str] | None = None) -> FinetuneCommand:
    argv = list(sys.argv[1:] if argv is None else argv)
    data = argparse.ArgumentParser(prog="mtm-finetune", add_help=False, allow_abbrev=False)
    add_data_arguments(data)
    sources, rest = (
        (argparse.Namespace(data=[], action_free=set()), argv)
        if {"-h", "--help"} & set(argv)
        else data.parse_known_args(argv)
    )
    args = parse_command(
        FinetuneCommand, rest, prog="mtm-finetune", description=(__doc__ or "") + DATA_HELP
    )
    args.data, args.action_free = sources.data, frozenset(sources.action_free)
    return args


def evaluate(checkpoint: str, task: str, episodes: int) -> dict[str, float]:
    """Mean normalised score per mode, lockstep, on the evaluation seeds (sim.evaluation)."""
    from controllers.session import EVALUATION_SEED_BASE
    from mtm_robot.evaluation import MTMPolicy
    from mtm_robot_client.modes import RETURN_MODES
    from sim.evaluation import evaluate as evaluate_policy

    seeds = [EVALUATION_SEED_BASE + i for i in range(episodes)]
    policy = MTMPolicy.from_checkpoint(checkpoint, "return_conditioned")
    return {
        mode: evaluate_policy(replace(policy, mode=mode), task, seeds).mean_score
        for mode in RETURN_MODES
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    check_output_dir(args.out, "--out")
    from mtm_robot.cli.train import run_trainer
    from mtm_robot.training.checkpoint import resolve_checkpoint_path, verify_checkpoint
    from mtm_robot.training.train import TrainConfig, Trainer  # torch: after the arguments

    source = resolve_checkpoint_path(args.checkpoint)
    meta = verify_checkpoint(source)
    if not isinstance(meta.get("training"), dict):
        raise CheckpointError(f"{source}: no training config in its metadata; cannot finetune it")
    training = apply_overrides(
        meta["training"],
        [
            f"steps={args.steps}",
            f"optim.lr={args.lr}",
            f"optim.warmup_steps={min(200, args.steps)}",
            f"checkpoint_every={min(500, args.steps)}",  # a kill costs at most 500 steps
            "checkpoint_every_s=120",  # or 2 minutes, whichever comes first
            f"eval_every={max(1, args.steps // 4)}",
            f"model_id={meta['training'].get('model_id', 'mtm')}-ft",
            "device=auto",  # where the checkpoint trained (a GPU, say) is not where this runs
            "threads=0",
            *args.set,
        ],
    )
    config = from_dict(TrainConfig, training, "finetune config")
    named = argparse.Namespace(data=args.data, action_free=args.action_free)
    episodes = load_data_arguments(named, echo=print)
    provenance = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "finetuned_from": str(source),
        "from_model_id": meta.get("model_id"),
    }
    start = time.perf_counter()
    with run_directory(args.out):  # gone again if finetuning cannot start
        trainer = Trainer(config, episodes, args.out, provenance, init_from=source)
        if trainer.resumed_from is not None:
            print(f"resumed from step {trainer.step} ({trainer.resumed_from})", flush=True)
        metrics = run_trainer(trainer, args.progress)  # None: Ctrl-C, a checkpoint saved
    if metrics is None:
        return 130
    latest = (args.out / "checkpoints" / "latest").resolve()
    print(f"finetuned {config.steps} steps in {time.perf_counter() - start:.0f} s: {latest}")
    for key, value in metrics.items():
        if "/" not in key:
            print(f"  {key}: {value:.5f}")
    task = str(meta.get("task") or config.task)
    if args.eval_episodes and task:
        before = evaluate(str(source), task, args.eval_episodes)
        after = evaluate(str(latest), task, args.eval_episodes)
        for mode in before:
            print(
                f"  {mode}: normalised score {before[mode]:.1f} -> {after[mode]:.1f} "
                f"({args.eval_episodes} lockstep episodes)"
            )
    if args.push:
        from mtm_robot_client import NodeClient

        with NodeClient(args.push) as client:
            reply = client.reload(checkpoint=str(latest))
        print(f"pushed to {args.push}: node now serves {reply.model_id}")
    return 0


def entry() -> NoReturn:
    """The ``mtm-finetune`` command (``python launch/finetune.py`` from a checkout)."""
    run(main)
