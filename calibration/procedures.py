"""Running the calibration procedures and writing their results (``launch/calibrate.py``).

Into an output directory: ``io_map.yaml`` (the map used), and per procedure a YAML of its
measurements and a PNG of its sweep (``io_map_check``, ``latency``, ``return_target``), and
``calibration.yaml``, the file ``sim_control.py --calibration`` reads. A procedure run alone
updates its section of an existing ``calibration.yaml`` for the same task and checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from calibration.calibration_file import (
    FILE_NAME,
    CalibrationFile,
    ControlCalibration,
    ReturnTargetCalibration,
    load_calibration,
    save_calibration,
)
from calibration.figures import plot_io_check, plot_latency, plot_return_target
from calibration.io_check import IOCheckConfig, IOCheckResult, check_io_map
from calibration.latency import LatencyConfig, LatencyResult, measure_latency
from calibration.return_target import (
    ReturnTargetConfig,
    ReturnTargetResult,
    return_range,
    sweep_return_target,
)
from controllers.io_map import IOMap, describe_env, load_io_map, mapped_env, save_io_map
from mtm_robot.checkpoint_meta import verify_checkpoint
from mtm_robot.config import to_dict
from mtm_robot.errors import ConfigError, MTMRobotError
from mtm_robot.serving.process import NodeProcess, open_node
from mtm_robot_client import NodeClient
from mtm_robot_client.modes import action_modes, get_mode
from sim import registry

log = logging.getLogger(__name__)

PROCEDURES = ("io_map", "latency", "return_target")
#: The modes calibration can run: an action answer with no request array (it has no reference).
CALIBRATION_MODES = action_modes()


@dataclass
class CalibrationConfig:
    """What ``mtm-calibrate`` calibrates, against which model, and each procedure's settings."""

    task: str = "walker"
    """registered task, e.g. walker, walker-run"""
    checkpoint: str = "default"
    """checkpoint served by a node the calibration starts ("default": the shipped walker)"""
    server: str = ""
    """use a running node (tcp://host:port) instead of starting one"""
    io_map: str = ""
    """I/O map YAML to check and use ("": the task's own I/O, unmapped)"""
    mode: str = "return_conditioned"
    """the inference mode the loop will run"""
    node_args: list[str] = field(default_factory=list)
    """extra mtm-serve arguments for the node the calibration starts"""
    node_ready_timeout_s: float = 180.0
    """how long the started node may take to load and warm up"""
    io_check: IOCheckConfig = field(default_factory=IOCheckConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    return_target: ReturnTargetConfig = field(default_factory=ReturnTargetConfig)

    def __post_init__(self) -> None:
        if self.mode not in CALIBRATION_MODES:
            raise ConfigError(f"mode must be one of {CALIBRATION_MODES}, got '{self.mode}'")


@dataclass
class CalibrationOutcome:
    path: Path  # the calibration file
    calibration: CalibrationFile
    io_check: IOCheckResult | None = None
    latency: LatencyResult | None = None
    return_target: ReturnTargetResult | None = None
    wall_s: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # procedures not run, and why


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, width=100))


def _start_calibration(config: CalibrationConfig, task: str, out_dir: Path) -> CalibrationFile:
    path = out_dir / FILE_NAME
    checkpoint = config.server or config.checkpoint
    if path.is_file():
        previous = load_calibration(path)
        if previous.task == task and previous.checkpoint == checkpoint:
            return previous
        log.warning("%s is for %s/%s: starting a new one", path, previous.task, previous.checkpoint)
    return CalibrationFile(task=task, checkpoint=checkpoint)


def run_calibration(
    config: CalibrationConfig,
    procedures: list[str],
    out_dir: Path,
    progress: bool = True,
    machine: str = "",
) -> CalibrationOutcome:
    """Run ``procedures`` (names in :data:`PROCEDURES`, run in that order) for ``config``."""
    unknown = [p for p in procedures if p not in PROCEDURES]
    if unknown or not procedures:
        raise ConfigError(f"procedures must be some of {PROCEDURES}, got {procedures}")
    try:
        task = registry.resolve(config.task)
    except KeyError as exc:
        raise MTMRobotError(str(exc.args[0])) from exc
    checkpoint_meta = None
    if "io_map" in procedures and not config.server:
        checkpoint_meta = verify_checkpoint(config.checkpoint)  # complete, and the weights fit
    out_dir.mkdir(parents=True, exist_ok=True)
    cal = _start_calibration(config, task, out_dir)
    outcome = CalibrationOutcome(out_dir / FILE_NAME, cal)
    env = registry.make(task)
    try:
        fields, actuators = describe_env(env)
    finally:
        env.close()
    io_map = (
        load_io_map(config.io_map) if config.io_map else IOMap.identity(task, fields, actuators)
    )
    io_map.check_env(fields, actuators, task)
    map_path = out_dir / "io_map.yaml"
    previous_map = map_path.read_text() if map_path.is_file() else None
    save_io_map(io_map, map_path)
    if previous_map != map_path.read_text():
        cal.io_map_ok, cal.io_map_problems = None, []  # a check of another map no longer holds
    cal.io_map = map_path.name
    header = {"task": task, "checkpoint": cal.checkpoint, "machine": machine}

    if "io_map" in procedures:
        if checkpoint_meta is not None:  # the model side too (with a server, a node checks)
            io_map.check_model(checkpoint_meta)
            model_id = str(checkpoint_meta.get("model_id", ""))
            if cal.model_id and cal.model_id != model_id:
                cal.control, cal.return_target = None, None  # measured on another model
            cal.model_id = model_id
        start = time.perf_counter()
        check = check_io_map(task, io_map, config.io_check, progress)
        outcome.wall_s["io_map"] = time.perf_counter() - start
        outcome.io_check = check
        cal.io_map_ok = check.ok
        cal.io_map_problems = [p.message for p in check.problems]
        _write_yaml(
            out_dir / "io_map_check.yaml",
            {
                **header,
                "io_map": str(config.io_map or "(the task's own I/O)"),
                **check.to_dict(),
                "config": to_dict(config.io_check),
                "wall_s": round(outcome.wall_s["io_map"], 2),
            },
        )
        plot_io_check(check, out_dir / "io_map_check.png")
        if not check.ok:
            rest = [p for p in procedures if p != "io_map"]
            outcome.skipped += [f"{p}: the I/O map check failed" for p in rest]
            save_calibration(cal, outcome.path)
            return outcome

    if "latency" in procedures or "return_target" in procedures:
        _with_node(config, task, io_map, procedures, out_dir, outcome, header, progress)
    save_calibration(cal, outcome.path)
    return outcome


def _with_node(
    config: CalibrationConfig,
    task: str,
    io_map: IOMap,
    procedures: list[str],
    out_dir: Path,
    outcome: CalibrationOutcome,
    header: dict[str, Any],
    progress: bool,
) -> None:
    cal = outcome.calibration
    node: NodeProcess | None = None
    env = registry.make(task)
    try:
        endpoint, metadata, node = open_node(
            config.server,
            config.checkpoint,
            out_dir / "node.log",
            config.node_args,
            config.node_ready_timeout_s,
        )
        io_map.check_model(metadata)
        model_id = str(metadata.get("model_id", ""))
        if cal.model_id and cal.model_id != model_id:
            cal.control, cal.return_target = None, None  # measured on another model
        cal.model_id = model_id
        header = {**header, "model_id": model_id, "mode": config.mode}
        mapped = mapped_env(env, io_map)
        needs_target = get_mode(config.mode).needs_return_target
        with NodeClient(endpoint, timeout_ms=10_000) as client:
            client.wait_ready(timeout_s=config.node_ready_timeout_s)
            if "latency" in procedures:
                target = None
                if needs_target:
                    target = (
                        cal.return_target.target_return
                        if cal.return_target is not None
                        else return_range(metadata)[1]
                    )
                start = time.perf_counter()
                lat = measure_latency(mapped, client, config.mode, target, config.latency, progress)
                outcome.wall_s["latency"] = time.perf_counter() - start
                outcome.latency = lat
                cal.control = ControlCalibration(
                    lat.control_hz,
                    lat.deadline_margin_ms,
                    round(lat.request_deadline_ms, 3),
                    lat.feasible,
                    lat.fallback,
                )
                _write_yaml(
                    out_dir / "latency.yaml",
                    {
                        **header,
                        **lat.to_dict(),
                        "config": to_dict(config.latency),
                        "wall_s": round(outcome.wall_s["latency"], 2),
                    },
                )
                plot_latency(lat, out_dir / "latency.png")
            if "return_target" in procedures:
                if not needs_target:
                    outcome.skipped.append(f"return_target: mode {config.mode} takes no target")
                else:
                    _return_target(
                        config, task, mapped, client, metadata, out_dir, outcome, header, progress
                    )
    finally:
        if node is not None:
            node.stop()
        env.close()


def _return_target(
    config: CalibrationConfig,
    task: str,
    env: Any,
    client: NodeClient,
    metadata: dict[str, Any],
    out_dir: Path,
    outcome: CalibrationOutcome,
    header: dict[str, Any],
    progress: bool,
) -> None:
    spec = registry.task_spec(task)
    score = (lambda r: registry.normalized_score(task, r)) if spec.reference else None
    start = time.perf_counter()
    sweep = sweep_return_target(
        env, client, metadata, config.mode, config.return_target, score, progress
    )
    outcome.wall_s["return_target"] = time.perf_counter() - start
    outcome.return_target = sweep
    outcome.calibration.return_target = ReturnTargetCalibration(
        config.mode, sweep.best_fraction, round(sweep.best_target, 6)
    )
    _write_yaml(
        out_dir / "return_target.yaml",
        {
            **header,
            **sweep.to_dict(),
            "config": to_dict(config.return_target),
            "wall_s": round(outcome.wall_s["return_target"], 2),
        },
    )
    plot_return_target(sweep, out_dir / "return_target.png", task)
