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

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, NoReturn

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from calibration.procedures import CalibrationConfig, run_calibration
from mtm_robot.cli import check_output_dir, run, run_directory
from mtm_robot.cli.settings import SETTINGS, Overrides, parse_command
from mtm_robot.errors import ConfigError, MTMRobotError
from mtm_robot.hardware import describe


@dataclass
class CalibrateCommand:
    """The arguments of ``mtm-calibrate``: which procedures, and the calibration settings."""

    calibration: Annotated[CalibrationConfig, SETTINGS] = field(default_factory=CalibrationConfig)
    config: str | None = None
    """YAML preset of the calibration settings: a file, or a shipped preset's name"""
    set: Overrides = field(default_factory=list)
    """override any setting, e.g. --set latency.ticks_per_rate=400 (the flags override these)"""
    run_all: bool = False
    """all three procedures (--all)"""
    run_io_map_check: bool = False
    """the I/O map check (--io-map-check)"""
    run_latency: bool = False
    """the latency budget (--latency)"""
    run_return_target: bool = False
    """the return-target sweep (--return-target)"""
    out: Path | None = None
    """output directory (default runs/calibration/<task>-<time>)"""
    progress: bool = True
    """progress bars (--no-progress: none)"""


#: The short names calibrate has always had.
ALIASES = {
    "--all": ["--run-all"],
    "--io-map-check": ["--run-io-map-check"],
    "--latency": ["--run-latency"],
    "--return-target": ["--run-return-target"],
    "--rates": ["--latency.rates-hz"],
    "--fractions": ["--return-target.fractions"],
    "--episodes": ["--return-target.episodes"],
    "--max-steps": ["--return-target.max-steps"],
}


def parse_args(argv: list[str] | None = None) -> CalibrateCommand:
    args = parse_command(
        CalibrateCommand, argv, prog="mtm-calibrate", description=__doc__, aliases=ALIASES
    )
    if not procedures(args):
        raise ConfigError(
            "choose procedures: --all, or any of --io-map-check --latency --return-target"
        )
    return args


def build_config(args: CalibrateCommand) -> CalibrationConfig:
    return args.calibration


def procedures(args: CalibrateCommand) -> list[str]:
    chosen = {
        "io_map": args.run_all or args.run_io_map_check,
        "latency": args.run_all or args.run_latency,
        "return_target": args.run_all or args.run_return_target,
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
    with run_directory(out, scratch=["node.log"]):  # gone again if the run cannot start
        outcome = run_calibration(config, run, out, progress=args.progress, machine=describe())
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
