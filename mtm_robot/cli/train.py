"""Train an MTM (or a specialised MLP baseline) on episode stores or D4RL-style HDF5 files.

Examples:
  mtm-train --config mtm_walker --data data/walker/expert
  mtm-train --config mtm_walker --data data/walker/expert-1pct \\
      --data data/walker/expert --action-free --steps 20000 --out runs/hetero
  torchrun --nproc_per_node 2 mtm-train --config ... --data ...   (DDP, same script)
  mtm-train --baseline inverse_dynamics --data data/walker/expert --out runs/mlp-id

The run directory gets the resolved config, metrics.jsonl, TensorBoard events and checkpoints;
rerunning the same command with the same --out resumes from the latest checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from mtm_robot.cli import check_output_dir, run, run_directory
from mtm_robot.config import load_config
from mtm_robot.data.importers import add_data_arguments, load_data_arguments
from mtm_robot.hardware import describe
from mtm_robot.training import BASELINE_TASKS

if TYPE_CHECKING:  # torch: imported after the arguments are parsed
    from mtm_robot.data.episodes import Episode
    from mtm_robot.training.baselines import BaselineConfig
    from mtm_robot.training.train import TrainConfig, Trainer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", type=Path, help="YAML file, or a shipped preset's name, e.g. mtm_walker"
    )
    add_data_arguments(parser)
    parser.add_argument("--steps", type=int, help="total optimiser steps (overrides the config)")
    parser.add_argument(
        "--task",
        help="the task the MTM checkpoint records (default: the one the episodes name; D4RL files "
        "name none), e.g. walker-walk",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/train"), help="run directory")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=1e-4",
    )
    parser.add_argument(
        "--baseline",
        choices=BASELINE_TASKS,
        help="train a specialised MLP baseline instead of the MTM",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # torch loads after the arguments are parsed: --help and a bad flag answer at once
    from mtm_robot.training.baselines import BaselineConfig
    from mtm_robot.training.train import TrainConfig

    overrides = list(args.set) + ([f"steps={args.steps}"] if args.steps is not None else [])
    if args.task and not args.baseline:
        overrides.append(f"task={args.task}")
    # the config and the run directory are checked before any data is read
    config: BaselineConfig | TrainConfig = (
        load_config(BaselineConfig, args.config, overrides)
        if args.baseline
        else load_config(TrainConfig, args.config, overrides)
    )
    check_output_dir(args.out, "--out")
    episodes = load_data_arguments(args, echo=print)
    provenance = {
        "command": " ".join(shlex.quote(a) for a in sys.argv),
        "data": [str(p) for p in args.data],
        "action_free_data": [str(args.data[i]) for i in sorted(args.action_free)],
        "machine": describe(),
    }
    start = time.perf_counter()
    with run_directory(args.out):  # gone again if training cannot start
        metrics = _train(args, config, episodes, provenance)
    if metrics is None:
        return 130
    print(f"done in {time.perf_counter() - start:.0f} s; run directory {args.out}")
    for key, value in metrics.items():
        print(f"  {key}: {value:.5f}")
    return 0


def _train(
    args: argparse.Namespace,
    config: BaselineConfig | TrainConfig,
    episodes: list[Episode],
    provenance: dict[str, Any],
) -> dict[str, float] | None:
    """Train the MTM or a baseline into ``args.out``; returns the final metrics, or None after
    Ctrl-C (the MTM saves a checkpoint at the step it reached, so the same command resumes)."""
    from mtm_robot.training.baselines import BaselineConfig, train_baseline
    from mtm_robot.training.train import Trainer

    if isinstance(config, BaselineConfig):
        return train_baseline(
            args.baseline, config, episodes, args.out, provenance, progress=not args.no_progress
        )
    else:
        trainer = Trainer(config, episodes, args.out, provenance)
        report = trainer.data.report
        print(
            f"data: {report.train_episodes} train / {report.validation_episodes} validation "
            f"episodes, {report.train_windows} windows, {report.skipped_short} too short, "
            f"{report.dropped_nonfinite} dropped (non-finite), "
            f"{report.action_free_episodes} action-free"
        )
        print(f"task: {trainer.task or '(none: the data name no single task; pass --task)'}")
        if trainer.resumed_from is not None:
            print(f"resumed from step {trainer.step} ({trainer.resumed_from})")
        return run_trainer(trainer, progress=not args.no_progress)


def run_trainer(trainer: Trainer, progress: bool) -> dict[str, float] | None:
    """``trainer.run()``; after Ctrl-C a checkpoint at the step reached (metrics.jsonl is
    written line by line), a line saying so on stderr, and None (mtm-train, mtm-finetune)."""
    import torch

    try:
        return trainer.run(progress=progress)
    except KeyboardInterrupt:
        if trainer.rank != 0:
            return None
        finite = all(bool(torch.isfinite(p).all()) for p in trainer.model.parameters())
        saved = trainer.save() if trainer.step > 0 and finite else None
        where = f"checkpoint {saved}" if saved else "no checkpoint written"
        print(
            f"\ninterrupted at step {trainer.step} ({where}); rerun the same command to resume",
            file=sys.stderr,
        )
        return None
    finally:
        trainer.close()


def entry() -> NoReturn:
    """The ``mtm-train`` command (``python launch/train.py`` from a checkout)."""
    run(main)
