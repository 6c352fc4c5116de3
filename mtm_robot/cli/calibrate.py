"""Calibrate a robot or simulator onto a trained model; writes the file sim_control.py reads.

Procedures (pick any; --all runs the three in this order):
  --io-map-check   excite each actuator through the I/O map in the simulator and check the
                   sign, scale, order and offset of every action, and every state element
                   (no node needed); problems are reported by name and stop the run
  --latency        round trips to the node, tick work and timer jitter, then a realtime loop
                   at candidate rates: recommends control rate, deadline margin, fallback
  --return-target  lockstep episodes over target fractions 0.6 ... 1.1 of the training
                   return range (reference 4.6): records the best target

Writes into --out (default runs/calibration/<task>-<time>): io_map.yaml, a YAML and a PNG
per procedure, and calibration.yaml. Then:
  mtm-sim-control --task walker --calibration OUT/calibration.yaml

Examples:
  mtm-calibrate --task walker --all
  mtm-calibrate --task walker --io-map-check --io-map my_robot_map.yaml
  mtm-calibrate --task walker --return-target --episodes 5 --out runs/cal
  mtm-calibrate --task walker --latency --server tcp://gpu-box:5555

Exit status: 0 done, 1 the I/O map check found problems, 2 bad input (message on stderr).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import NoReturn

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from calibration.procedures import CALIBRATION_MODES, CalibrationConfig, run_calibration
from mtm_robot.cli import check_output_dir, flag_overrides, run
from mtm_robot.config import load_config
from mtm_robot.errors import MTMRobotError
from mtm_robot.hardware import describe


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", type=Path, help="YAML preset of a CalibrationConfig")
    p.add_argument("--task", help="registered task, e.g. walker, walker-run (default walker)")
    p.add_argument("--checkpoint", help="checkpoint directory or 'default' (shipped walker)")
    p.add_argument("--server", help="use a running node (tcp://host:port) instead of starting one")
    p.add_argument(
        "--io-map", help="I/O map YAML to check and use (default: the task's own I/O, unmapped)"
    )
    p.add_argument(
        "--mode",
        choices=CALIBRATION_MODES,
        help="inference mode of the loop (default return_conditioned)",
    )
    which = p.add_argument_group("procedures")
    which.add_argument("--all", action="store_true", help="all three procedures")
    which.add_argument("--io-map-check", action="store_true", help="the I/O map check")
    which.add_argument("--latency", action="store_true", help="the latency budget")
    which.add_argument("--return-target", action="store_true", help="the return-target sweep")
    p.add_argument(
        "--rates", type=float, nargs="+", metavar="HZ", help="latency: candidate control rates"
    )
    p.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        metavar="P",
        help="return target: fractions of the return range (default 0.6 0.7 0.8 0.9 1.0 1.1)",
    )
    p.add_argument("--episodes", type=int, help="return target: episodes per fraction (default 5)")
    p.add_argument(
        "--max-steps", type=int, help="return target: steps per episode (default: whole episodes)"
    )
    p.add_argument(
        "--out", type=Path, help="output directory (default runs/calibration/<task>-<time>)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config value, e.g. --set latency.ticks_per_rate=400",
    )
    args = p.parse_args(argv)
    if not (args.all or args.io_map_check or args.latency or args.return_target):
        p.error("choose procedures: --all, or any of --io-map-check --latency --return-target")
    return args


def build_config(args: argparse.Namespace) -> CalibrationConfig:
    flags = {
        "task": args.task,
        "checkpoint": args.checkpoint,
        "server": args.server,
        "io_map": args.io_map,
        "mode": args.mode,
        "latency.rates_hz": args.rates,
        "return_target.fractions": args.fractions,
        "return_target.episodes": args.episodes,
        "return_target.max_steps": args.max_steps,
    }
    return load_config(CalibrationConfig, args.config, flag_overrides(flags) + list(args.set))


def procedures(args: argparse.Namespace) -> list[str]:
    chosen = {
        "io_map": args.all or args.io_map_check,
        "latency": args.all or args.latency,
        "return_target": args.all or args.return_target,
    }
    return [name for name, on in chosen.items() if on]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = build_config(args)
    from sim.registry import resolve

    try:
        task = resolve(config.task)
    except KeyError as exc:  # an unknown task: the message lists the known ones
        raise MTMRobotError(str(exc.args[0])) from exc
    out = args.out or Path("runs") / "calibration" / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_output_dir(out, "--out")
    run = procedures(args)
    print(f"{task}: calibrating {', '.join(run)}; checkpoint {config.server or config.checkpoint}")
    start = time.perf_counter()
    outcome = run_calibration(config, run, out, progress=not args.no_progress, machine=describe())
    total = time.perf_counter() - start
    if outcome.io_check is not None:
        check = outcome.io_check
        print(f"I/O map: {'OK' if check.ok else f'{len(check.problems)} problem(s)'}")
        for problem in check.problems:
            print(f"  - [{problem.kind}] {problem.message}")
    if outcome.latency is not None:
        lat = outcome.latency
        print(
            f"latency: round trip p50 {np.percentile(lat.round_trip_ms, 50):.2f} ms, "
            f"p99 {np.percentile(lat.round_trip_ms, 99):.2f} ms; recommend {lat.control_hz:g} Hz, "
            f"deadline margin {lat.deadline_margin_ms:g} ms (request deadline "
            f"{lat.request_deadline_ms:.1f} ms), hold {lat.fallback.hold_ticks} / decay "
            f"{lat.fallback.decay_ticks} / safe after {lat.fallback.safe_after_misses} misses"
            + ("" if lat.feasible else "  [NO RATE MET THE BUDGET]")
        )
        for note in lat.notes:
            print(f"  - {note}")
    if outcome.return_target is not None:
        sweep = outcome.return_target
        means = ", ".join(
            f"{p:g}: {m:.1f}" for p, m in zip(sweep.fractions, sweep.returns.mean(axis=1))
        )
        print(
            f"return target: best fraction {sweep.best_fraction:g} -> target "
            f"{sweep.best_target:.4g} (mean return per fraction {means})"
        )
        for note in sweep.notes:
            print(f"  - {note}")
    for skipped in outcome.skipped:
        print(f"skipped {skipped}")
    print(f"wall time {total:.1f} s; calibration file: {outcome.path}")
    if outcome.io_check is not None and not outcome.io_check.ok:
        return 1
    print(f"use it: mtm-sim-control --task {task} --calibration {outcome.path}")
    return 0


def entry() -> NoReturn:
    """The ``mtm-calibrate`` command (``python launch/calibrate.py`` from a checkout)."""
    run(main)
