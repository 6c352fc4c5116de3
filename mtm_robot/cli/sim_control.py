"""Control a simulated robot with an MTM served by an inference node: the package's main job.

Starts the inference node as a separate process (or uses --server), runs the fixed-rate
controller and the simulator in this process, prints a summary table and writes a run
directory (resolved config, per-tick telemetry, summary.json, plots).

Examples:
  mtm-sim-control --task walker
  mtm-sim-control --task walker --lockstep --episodes 20 --json
  mtm-sim-control --task walker --mode inverse_dynamics --reference demo.npz
  mtm-sim-control --task cheetah-run --checkpoint runs/cheetah/checkpoints/latest
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import NoReturn

os.environ.setdefault("MUJOCO_GL", "egl")

from calibration.calibration_file import check_task, session_overrides
from controllers.loop import CONTROL_MODES
from controllers.report import summary_table, write_run_dir
from controllers.session import EpisodeDone, SessionConfig, run_session
from mtm_robot.cli import check_output_dir, flag_overrides, run
from mtm_robot.config import load_config, save_config
from mtm_robot.errors import MTMRobotError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", type=Path, help="YAML preset of a SessionConfig")
    p.add_argument("--task", help="registered task, e.g. walker, walker-run, Hopper-v5")
    p.add_argument(
        "--mode", choices=CONTROL_MODES, help="inference mode (default return_conditioned)"
    )
    p.add_argument("--checkpoint", help="checkpoint directory or 'default' (shipped walker)")
    p.add_argument("--server", help="use a running node (tcp://host:port) instead of starting one")
    p.add_argument("--episodes", type=int, help="episodes to run (default 3)")
    p.add_argument("--seed", type=int, help="reset seed of the first episode")
    p.add_argument(
        "--target-return",
        type=float,
        help="return target (default: the top of the training return range)",
    )
    p.add_argument(
        "--calibration",
        type=Path,
        help="calibration.yaml from mtm-calibrate: its control rate, deadline margin, "
        "fallback, return target and I/O map apply unless given here explicitly",
    )
    p.add_argument("--reference", help="episode .npz whose states inverse_dynamics tracks")
    pacing = p.add_mutually_exclusive_group()
    pacing.add_argument(
        "--realtime",
        action="store_true",
        help="paced on the wall clock at the control rate (default)",
    )
    pacing.add_argument(
        "--lockstep", action="store_true", help="wait for every reply: deterministic evaluation"
    )
    p.add_argument("--control-hz", type=float, help="loop rate (default: the task's rate)")
    p.add_argument(
        "--rt-priority",
        type=int,
        help="SCHED_FIFO priority (1-99) for the loop and the node (needs root)",
    )
    p.add_argument(
        "--node-restarts",
        type=int,
        help="restarts of the node this run started, after it dies (default 1; then the run "
        "ends, the reason in summary.json)",
    )
    p.add_argument("--record", help="write the episodes to this episode-store directory")
    p.add_argument("--video", type=Path, help="render the first episode to this .mp4/.gif")
    p.add_argument("--out", type=Path, help="run directory (default runs/sim_control/<time>)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON last")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config value, e.g. --set controller.history=1",
    )
    return p.parse_args(argv)


def build_config(args: argparse.Namespace) -> SessionConfig:
    flags = {
        "task": args.task,
        "checkpoint": args.checkpoint,
        "server": args.server,
        "episodes": args.episodes,
        "seed": args.seed,
        "target_return": args.target_return,
        "reference": args.reference,
        "record": args.record,
        "controller.mode": args.mode,
        "controller.control_hz": args.control_hz,
        "controller.realtime": False if args.lockstep else None,
        "rt_priority": args.rt_priority,
        "node_restarts": args.node_restarts,
    }
    calibrated = session_overrides(args.calibration) if args.calibration else []
    config = load_config(
        SessionConfig, args.config, calibrated + flag_overrides(flags) + list(args.set)
    )
    if args.calibration:
        check_task(args.calibration, config.task)
    return config


def _echo(done: EpisodeDone) -> None:
    print(done.line(), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = build_config(args)
    check_output_dir(args.out, "--out")
    check_output_dir(config.record, "--record")
    run_dir = args.out or Path("runs") / "sim_control" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    pacing = "realtime" if config.controller.realtime else "lockstep"
    print(
        f"{config.task}: {config.controller.mode}, {config.episodes} episodes, {pacing}, "
        f"checkpoint {config.server or config.checkpoint}; run directory {run_dir}"
    )
    result = run_session(config, run_dir, progress=False, on_episode=None if args.json else _echo)
    save_config(config, run_dir / "config.yaml")  # resolved, incl. the return target used
    summary = write_run_dir(result, run_dir)
    if args.video and result.episodes:
        from sim import registry
        from sim.render import frames_from_physics, write_video

        env = registry.make(config.task)
        try:
            frames = frames_from_physics(env, result.episodes[0].physics, stride=2)
            count = write_video(frames, args.video, fps=env.control_hz / 2)
        finally:
            env.close()
        print(f"video: {args.video} ({count} frames)")
    print(
        f"model {result.model.get('model_id')} ({result.model.get('backend')}); "
        f"target return {config.controller.target_return}"
    )
    calibrated_for = check_task(args.calibration, config.task).model_id if args.calibration else ""
    if calibrated_for and calibrated_for != result.model.get("model_id"):
        print(f"warning: {args.calibration} was calibrated on model {calibrated_for}")
    print(summary_table(result))
    print(f"run directory: {run_dir}")
    if args.json:
        print(json.dumps(summary, default=float))
    if result.ended_by:  # the run directory is written; the run is not complete
        raise MTMRobotError(f"the run ended early: {result.ended_by}")
    if result.recording_error:  # the run directory is written; the recording is not complete
        raise MTMRobotError(f"--record: {result.recording_error}")
    return 0


def entry() -> NoReturn:
    """The ``mtm-sim-control`` command (``python launch/sim_control.py`` from a checkout)."""
    run(main)
