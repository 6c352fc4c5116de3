"""Two-process DDP training on CPU (gloo) through torchrun and the same launcher."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mtm_robot.data.episodes import episode_file, save_episode
from mtm_robot.training.checkpoint import load_checkpoint
from tests.synthetic import linear_episodes

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("precision", ["auto", "fp32"])  # fp32: linear layers on oneDNN
def test_torchrun_two_processes_gloo(tmp_path, precision):
    for i, episode in enumerate(linear_episodes(8, length=20)):
        save_episode(episode_file(tmp_path / "data", i), episode)
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        str(ROOT / "launch" / "train.py"),
        "--config",
        str(ROOT / "launch/configs/mtm_tiny.yaml"),
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(out),
        "--steps",
        "20",
        "--no-progress",
        "--set",
        "threads=1",
        "--set",
        f"precision={precision}",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=220, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    ck = load_checkpoint(out / "checkpoints" / "latest")
    assert ck.metadata["step"] == 20
    assert ck.metadata["provenance"]["world_size"] == 2
    assert all(torch.isfinite(p).all() for p in ck.model.parameters())
