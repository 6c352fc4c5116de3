"""The calibration file: what ``launch/calibrate.py`` writes and ``sim_control.py`` reads.

A dataclass, YAML its serialisation (through :mod:`mtm_robot.config`). Each procedure fills
its own section and leaves the others as they are, so procedures can run one at a time::

    format_version: 1
    task: walker-walk
    checkpoint: default
    model_id: mtm-walker-walk
    io_map: io_map.yaml          # relative to this file
    io_map_ok: true              # the simulator check found no problem
    control:                     # from the latency budget
      control_hz: 40.0
      deadline_margin_ms: 0.9
      request_deadline_ms: 24.1
      feasible: true
      fallback: {use_chunk: true, hold_ticks: 1, decay_ticks: 8, safe_after_misses: 40}
    return_target:               # from the return-target sweep
      mode: return_conditioned
      target_fraction: 0.9
      target_return: 0.87

:func:`session_overrides` turns it into ``key=value`` overrides of a
:class:`~controllers.session.SessionConfig`; explicit options given after them win.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from controllers.fallback import FallbackConfig
from mtm_robot.config import load_config, save_config
from mtm_robot.errors import ConfigError

FORMAT_VERSION = 1
FILE_NAME = "calibration.yaml"


@dataclass
class ControlCalibration:
    control_hz: float
    deadline_margin_ms: float
    request_deadline_ms: float  # for the reader: the request budget, period minus margin
    feasible: bool  # the rate met the budget in the measurement
    fallback: FallbackConfig = field(default_factory=FallbackConfig)


@dataclass
class ReturnTargetCalibration:
    mode: str
    target_fraction: float
    target_return: float


@dataclass
class CalibrationFile:
    format_version: int = FORMAT_VERSION
    task: str = ""
    checkpoint: str = ""
    model_id: str = ""
    updated_utc: str = ""
    io_map: str = ""  # the I/O map file, relative to this file ("" = the task's own I/O)
    io_map_ok: bool | None = None  # None: not checked
    io_map_problems: list[str] = field(default_factory=list)
    control: ControlCalibration | None = None
    return_target: ReturnTargetCalibration | None = None

    def __post_init__(self) -> None:
        if self.format_version != FORMAT_VERSION:
            raise ConfigError(
                f"calibration format_version {self.format_version}, expected {FORMAT_VERSION}"
            )


def load_calibration(path: str | Path) -> CalibrationFile:
    return load_config(CalibrationFile, path)


def save_calibration(calibration: CalibrationFile, path: str | Path) -> None:
    calibration.updated_utc = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    save_config(calibration, path)


def session_overrides(path: str | Path) -> list[str]:
    """``key=value`` overrides of a ``SessionConfig`` from the calibration file at ``path``.

    Refuses a file whose I/O map check failed.
    """
    path = Path(path)
    cal = load_calibration(path)
    if cal.io_map_ok is False:
        problems = "\n  ".join(cal.io_map_problems) or "(see io_map_check.yaml)"
        raise ConfigError(
            f"{path}: the I/O map check failed; fix the map and rerun calibrate.py:\n  {problems}"
        )
    overrides = []
    if cal.io_map:
        io_map = (path.parent / cal.io_map).resolve()
        if not io_map.is_file():
            raise ConfigError(f"{path}: its I/O map {io_map} does not exist")
        overrides.append(f"io_map={io_map}")
    if cal.control is not None:
        ctl = cal.control
        overrides += [
            f"controller.control_hz={ctl.control_hz}",
            f"controller.deadline_margin_ms={ctl.deadline_margin_ms}",
            f"controller.fallback.use_chunk={str(ctl.fallback.use_chunk).lower()}",
            f"controller.fallback.hold_ticks={ctl.fallback.hold_ticks}",
            f"controller.fallback.decay_ticks={ctl.fallback.decay_ticks}",
            f"controller.fallback.safe_after_misses={ctl.fallback.safe_after_misses}",
        ]
    if cal.return_target is not None:
        overrides.append(f"target_return={cal.return_target.target_return}")
    return overrides


def check_task(path: str | Path, task: str) -> CalibrationFile:
    """The calibration at ``path``; raises when it was made for another task than ``task``."""
    from sim.registry import resolve

    cal = load_calibration(path)
    if cal.task and resolve(task) != resolve(cal.task):
        raise ConfigError(f"{path} calibrates task '{cal.task}', this run is '{resolve(task)}'")
    return cal
