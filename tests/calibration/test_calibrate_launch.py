"""launch/calibrate.py end to end (node process, walker), and sim_control reading its file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.controllers.test_sim_control import _checkpoint

ROOT = Path(__file__).resolve().parents[2]
QUICK = [
    "--rates", "40", "80",
    "--fractions", "0.8", "1.0",
    "--episodes", "1",
    "--max-steps", "30",
    "--set", "latency.round_trips=30",
    "--set", "latency.work_samples=30",
    "--set", "latency.timer_ticks=20",
    "--set", "latency.ticks_per_rate=20",
    "--no-progress",
]  # fmt: skip


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(ROOT / "launch" / script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=170, cwd=ROOT)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ck") / "walker")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_calibrate_all_then_sim_control_uses_the_file(checkpoint, tmp_path):
    out = tmp_path / "cal"
    result = _run(
        "calibrate.py",
        "--task",
        "walker",
        "--all",
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(out),
        *QUICK,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "I/O map: OK" in result.stdout
    for name in ("io_map_check", "latency", "return_target"):
        assert (out / f"{name}.yaml").is_file() and (out / f"{name}.png").stat().st_size > 1000
    cal = yaml.safe_load((out / "calibration.yaml").read_text())
    assert cal["model_id"] == "tiny-walker" and cal["io_map_ok"] is True
    assert cal["control"]["control_hz"] in (40.0, 80.0)
    assert cal["return_target"]["target_fraction"] in (0.8, 1.0)
    # tiny checkpoint's return range is [0.1, 0.9]
    assert cal["return_target"]["target_return"] == pytest.approx(
        0.1 + cal["return_target"]["target_fraction"] * 0.8
    )
    run = tmp_path / "run"
    result = _run(
        "sim_control.py", "--checkpoint", str(checkpoint),
        "--calibration", str(out / "calibration.yaml"), "--episodes", "1", "--lockstep",
        "--set", "controller.max_steps=10", "--out", str(run),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    used = yaml.safe_load((run / "config.yaml").read_text())
    assert used["io_map"] == str((out / "io_map.yaml").resolve())
    assert used["target_return"] == cal["return_target"]["target_return"]
    assert used["controller"]["control_hz"] == cal["control"]["control_hz"]
    assert used["controller"]["deadline_margin_ms"] == cal["control"]["deadline_margin_ms"]
    assert used["controller"]["fallback"] == cal["control"]["fallback"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_wrong_map_stops_calibration_and_sim_control_refuses_it(checkpoint, tmp_path):
    out = tmp_path / "cal"
    wrong = ROOT / "launch" / "configs" / "calibration_io_map_walker_wrong.yaml"
    result = _run(
        "calibrate.py", "--task", "walker", "--all", "--checkpoint", str(checkpoint),
        "--io-map", str(wrong), "--out", str(out), *QUICK,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    assert "I/O map: 2 problem(s)" in result.stdout
    assert "[order] 'right_hip' and 'left_hip' are swapped" in result.stdout
    assert "[sign] model action 1 ('right_knee') has its sign flipped" in result.stdout
    assert "skipped latency: the I/O map check failed" in result.stdout
    assert not (out / "latency.yaml").exists()
    result = _run(
        "sim_control.py",
        "--checkpoint",
        str(checkpoint),
        "--calibration",
        str(out / "calibration.yaml"),
    )
    assert result.returncode == 2
    assert "the I/O map check failed" in result.stderr and "right_knee" in result.stderr


def test_bad_input_is_a_clear_error(tmp_path):
    result = _run("calibrate.py", "--task", "walker")
    assert result.returncode == 2 and "choose procedures" in result.stderr
    result = _run("calibrate.py", "--task", "walkr", "--io-map-check", "--out", str(tmp_path))
    assert result.returncode == 2 and "unknown task 'walkr'" in result.stderr
    result = _run(
        "calibrate.py", "--io-map-check", "--set", "io_check.delta=2", "--out", str(tmp_path)
    )
    assert result.returncode == 2 and "delta must be in (0, 1], got 2" in result.stderr
