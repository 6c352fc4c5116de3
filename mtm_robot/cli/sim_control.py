"""Control a simulated robot with an MTM served by an inference node: the package's main job.

Starts the inference node as a separate process (or uses --server), runs the fixed-rate
controller and the simulator in this process, prints a summary table and writes a run
directory (resolved config, per-tick telemetry, summary.json, plots).

Examples:
  mtm-sim-control --task walker
  mtm-sim-control --task walker --lockstep --episodes 20 --json
  mtm-sim-control --task walker --lockstep --episodes 1 --max-steps 50    # a short check
  mtm-sim-control --task walker --mode inverse_dynamics --reference demo.npz
  mtm-sim-control --task cheetah-run --checkpoint runs/cheetah/checkpoints/latest
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, NoReturn

os.environ.setdefault("MUJOCO_GL", "egl")

from calibration.calibration_file import check_task, session_overrides
from controllers.report import backend_of, summary_table, write_run_dir
from controllers.session import INTERRUPTED, SessionConfig, SessionResult, run_session
from mtm_robot.cli import check_output_dir, run, run_directory
from mtm_robot.cli.settings import SETTINGS, Overrides, parse_command
from mtm_robot.config import save_config
from mtm_robot.errors import MTMRobotError


@dataclass
class SimControlCommand:
    """The arguments of ``mtm-sim-control``: its own options and the session's settings."""

    session: Annotated[SessionConfig, SETTINGS] = field(default_factory=SessionConfig)
    config: str | None = None
    """YAML preset of the session settings: a file, or a shipped preset's name"""
    set: Overrides = field(default_factory=list)
    """override any setting, e.g. --set controller.history=1 (the flags override these)"""
    calibration: Path | None = None
    """calibration.yaml from mtm-calibrate (rate, margin, fallback, target, I/O map; flags win)"""
    video: Path | None = None
    """render the first episode to this .mp4/.gif"""
    out: Path | None = None
    """run directory (default runs/sim_control/<time>)"""
    json: bool = False
    """print the summary as JSON on stdout, and nothing else there (the rest goes to stderr)"""


#: The short names sim_control has always had.
ALIASES = {
    "--mode": ["--controller.mode"],
    "--control-hz": ["--controller.control-hz"],
    "--lockstep": ["--controller.no-realtime"],
    "--realtime": ["--controller.realtime"],
    "--max-steps": ["--controller.max-steps"],
}


def parse_args(argv: list[str] | None = None) -> SimControlCommand:
    return parse_command(
        SimControlCommand,
        argv,
        prog="mtm-sim-control",
        description=__doc__,
        aliases=ALIASES,
        presets={"--calibration": lambda path: session_overrides(Path(path))},
    )


def build_config(args: SimControlCommand) -> SessionConfig:
    config = args.session
    if args.calibration:
        check_task(args.calibration, config.task)
    return config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config = build_config(args)
    check_output_dir(args.out, "--out")
    check_output_dir(config.record, "--record")

    def say(line: str) -> None:  # with --json, stdout holds the JSON alone
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    run_dir = args.out or Path("runs") / "sim_control" / time.strftime("%Y%m%d-%H%M%S")
    pacing = "realtime" if config.controller.realtime else "lockstep"
    say(
        f"{config.task}: {config.controller.mode}, {config.episodes} episodes, {pacing}, "
        f"checkpoint {config.server or config.checkpoint}; run directory {run_dir}"
    )
    with run_directory(run_dir, scratch=["node.log"]):  # gone again if the run cannot start
        result = run_session(config, run_dir, progress=False, on_episode=lambda d: say(d.line()))
    save_config(config, run_dir / "config.yaml")  # resolved, incl. the return target used
    summary = write_run_dir(result, run_dir)
    if args.video and result.episodes:
        say(f"video: {args.video} ({_render_video(config.task, result, args.video)} frames)")
    backend = backend_of(result.model)
    say(f"model {result.model.get('model_id')} on {backend}; {_target(result)}")
    calibrated_for = check_task(args.calibration, config.task).model_id if args.calibration else ""
    if calibrated_for and calibrated_for != result.model.get("model_id"):
        say(f"warning: {args.calibration} was calibrated on model {calibrated_for}")
    say(summary_table(result))
    say(f"run directory: {run_dir}")
    if args.json:
        print(json.dumps(summary, default=float), flush=True)
    if result.ended_by == INTERRUPTED:  # Ctrl-C: the run directory holds the episodes done
        say(f"interrupted after {len(result.episodes)} of {config.episodes} episodes")
        return 130
    if result.ended_by:  # the run directory is written; the run is not complete
        raise MTMRobotError(f"the run ended early: {result.ended_by}")
    if result.recording_error:  # the run directory is written; the recording is not complete
        raise MTMRobotError(f"--record: {result.recording_error}")
    return 0


def _target(result: SessionResult) -> str:
    """The return target in the units the user gave it, with the model's units alongside."""
    target = result.return_target
    if not target:
        return "no return target (the mode takes none)"
    if target["given"] is None:
        return f"target return {target['model']} model units (the default rule)"
    if target["units"] == "model":
        return f"target return {target['given']:g} model units"
    given, units, model = target["given"], target["units"], target["model"]
    return f"target return {given:g} ({units}) = {model:.4g} model units"


def _render_video(task: str, result: SessionResult, path: Path) -> int:
    """The first episode to ``path`` (every second tick), a progress bar on stderr."""
    from tqdm import tqdm

    from sim import registry
    from sim.render import frames_from_physics, write_video

    env = registry.make(task)
    try:
        physics = result.episodes[0].physics
        frames = frames_from_physics(env, physics, stride=2)
        total = None if physics is None else math.ceil(len(physics) / 2)
        bar = tqdm(frames, total=total, desc="video", unit="frame")
        return write_video(bar, path, fps=env.control_hz / 2)
    finally:
        env.close()


def entry() -> NoReturn:
    """The ``mtm-sim-control`` command (``python launch/sim_control.py`` from a checkout)."""
    run(main)
