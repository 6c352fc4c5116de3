"""Rendering a recorded episode offscreen (subprocess: MUJOCO_GL must be set before import)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sim.datasets import CollectJob, collect_episodes

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_render_script_writes_a_gif_and_pngs_from_physics_states(tmp_path: Path) -> None:
    collect_episodes(CollectJob("mujoco-pointmass", "random", str(tmp_path / "eps"), 0, (0,), None))
    episode = tmp_path / "eps" / "episode_000000.npz"
    env = dict(os.environ, MUJOCO_GL=os.environ.get("MUJOCO_GL", "egl"))
    result = subprocess.run(
        [sys.executable, str(ROOT / "launch" / "render.py"), str(episode),
         "--out", str(tmp_path / "video.gif"), "--max-steps", "6", "--stride", "2",
         "--width", "64", "--height", "48",
         "--png-dir", str(tmp_path / "png"), "--png-steps", "0", "5"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if result.returncode != 0 and "gl" in result.stderr.lower() and "context" in result.stderr:
        pytest.skip(f"no offscreen OpenGL here: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote 3 frames" in result.stdout

    from PIL import Image

    first = np.asarray(Image.open(tmp_path / "png" / "frame_000000.png"))
    last = np.asarray(Image.open(tmp_path / "png" / "frame_000005.png"))
    assert first.shape == (48, 64, 3)
    assert first.std() > 1.0, "blank frame"
    assert not np.array_equal(first, last), "frames of different states are identical"
    with Image.open(tmp_path / "video.gif") as gif:
        assert gif.n_frames == 3
