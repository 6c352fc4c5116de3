"""``mtm-train`` as a user runs it: the task its checkpoint records, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from mtm_robot.checkpoint_meta import read_metadata
from mtm_robot.cli import train
from mtm_robot.config import save_config
from mtm_robot.data.episodes import episode_file, save_episode
from tests.synthetic import linear_episodes
from tests.training.test_train import _config

ROOT = Path(__file__).resolve().parents[2]


def _d4rl_file(path: Path) -> Path:
    """The synthetic episodes as one D4RL-style HDF5 file (which names no task)."""
    episodes = linear_episodes(4, length=12)
    with h5py.File(path, "w") as f:
        f["observations"] = np.concatenate([e.states for e in episodes])
        f["actions"] = np.concatenate([e.actions for e in episodes])
        f["rewards"] = np.concatenate([e.rewards for e in episodes])
        terminals = np.zeros(sum(len(e.states) for e in episodes), bool)
        terminals[np.cumsum([len(e.states) for e in episodes]) - 1] = True
        f["terminals"] = terminals
    return path


@pytest.mark.slow
def test_the_checkpoint_records_the_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    save_config(_config(2), tmp_path / "tiny.yaml")
    data = _d4rl_file(tmp_path / "linear.hdf5")
    base = ["--config", str(tmp_path / "tiny.yaml"), "--data", str(data), "--no-progress"]
    assert train.main([*base, "--out", str(tmp_path / "none")]) == 0
    assert read_metadata(tmp_path / "none" / "checkpoints" / "latest")["task"] == ""
    assert "task: (none: the data name no single task; pass --task)" in capsys.readouterr().out
    assert train.main([*base, "--task", "walker-walk", "--out", str(tmp_path / "named")]) == 0
    assert read_metadata(tmp_path / "named" / "checkpoints" / "latest")["task"] == "walker-walk"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_ctrl_c_saves_a_checkpoint_to_resume_from(tmp_path: Path) -> None:
    save_config(_config(100_000), tmp_path / "long.yaml")
    for i, episode in enumerate(linear_episodes(4, length=12)):
        save_episode(episode_file(tmp_path / "data", i), episode)
    cmd = [sys.executable, str(ROOT / "launch" / "train.py"), "--config",
           str(tmp_path / "long.yaml"), "--data", str(tmp_path / "data"), "--out",
           str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    try:
        deadline = time.monotonic() + 180
        while not (metrics.is_file() and metrics.read_text().strip()):  # step 50 logged
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no metrics line within 180 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err
    step = read_metadata(tmp_path / "run" / "checkpoints" / "latest")["step"]
    assert step >= 50
    assert f"interrupted at step {step} (checkpoint " in err
    assert "rerun the same command to resume" in err
    assert json.loads(metrics.read_text().splitlines()[0])["step"] == 50  # flushed
    resumed = subprocess.run(
        [*cmd, "--steps", str(step + 2)], capture_output=True, text=True, timeout=120,
        env={**os.environ},
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from step {step}" in resumed.stdout
