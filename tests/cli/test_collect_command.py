"""``mtm-collect`` stopped by Ctrl-C keeps the episodes it completed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtm_robot.data.episodes import load_episode

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_ctrl_c_keeps_the_complete_episodes(tmp_path: Path) -> None:
    out = tmp_path / "store"
    cmd = [sys.executable, str(ROOT / "launch" / "collect.py"), "--task", "walker", "--recipe",
           "random", "--episodes", "500", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "MUJOCO_GL": "egl"}, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".store.tmp-*/episode_000001.npz")):  # two written
            assert proc.poll() is None, proc.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "no episode written within 120 s"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err
    kept = sorted(out.glob("episode_*.npz"))
    assert 2 <= len(kept) < 500
    assert f"interrupted: the {len(kept)} complete episodes of 500 kept in {out}" in err
    assert all(len(load_episode(p)) == 1000 for p in kept)  # whole episodes only
    assert not list(tmp_path.glob(".store*"))  # no staging folder left beside it
