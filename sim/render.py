"""Offscreen rendering of recorded episodes from their physics states.

Frames come from ``SimEnv.set_physics_state`` + ``SimEnv.render``, never from re-running a
policy, so a video shows exactly what was recorded. Rendering is slow on CPU (tens to hundreds
of milliseconds per frame with Mesa EGL), so it happens after the fact, not in a control loop.
Set ``MUJOCO_GL=egl`` (no display needed) before anything imports mujoco; ``launch/render.py``
does that for you.

Video writers: ``.mp4`` needs ``imageio`` with the ``imageio-ffmpeg`` plugin; ``.gif`` needs
only Pillow. ``save_frames_png`` needs only Pillow.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from sim.env import SimEnv

logger = logging.getLogger(__name__)


def frames_from_physics(
    env: SimEnv,
    physics: np.ndarray | None,
    width: int = 320,
    height: int = 240,
    camera: int | str = -1,
    stride: int = 1,
) -> Iterator[np.ndarray]:
    """Yield ``(height, width, 3)`` uint8 frames for ``physics[::stride]`` (shape ``(T, dp)``)."""
    if physics is None:
        raise ValueError(
            f"{env.task}: no physics states to render (the run kept none: a robot without "
            "one, or a session run with keep_physics=False)"
        )
    physics = np.asarray(physics, dtype=np.float64)
    if physics.ndim != 2 or physics.shape[1] != env.physics_dim:
        raise ValueError(
            f"{env.task}: physics states must have shape (T, {env.physics_dim}), "
            f"got {physics.shape}"
        )
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    for state in physics[::stride]:
        env.set_physics_state(state)
        yield env.render(width=width, height=height, camera=camera)


def write_video(frames: Iterable[np.ndarray], path: str | Path, fps: float) -> int:
    """Write frames to ``.mp4`` (imageio-ffmpeg) or ``.gif`` (Pillow); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".gif":
        return _write_gif(frames, path, fps)
    if suffix not in (".mp4", ".mkv", ".webm", ".avi", ".mov"):
        raise ValueError(f"unsupported video extension {suffix!r}: use .mp4 or .gif")
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401  (the ffmpeg plugin; fail early with a clear hint)
    except ImportError as exc:
        raise RuntimeError(
            f"writing {suffix} needs imageio and imageio-ffmpeg "
            "(pip install imageio imageio-ffmpeg); or write a .gif (Pillow only)"
        ) from exc
    count = 0
    writer = imageio.get_writer(str(path), fps=fps, codec="libx264", quality=7, macro_block_size=1)
    try:
        for frame in frames:
            writer.append_data(frame)
            count += 1
    finally:
        writer.close()
    return count


def _write_gif(frames: Iterable[np.ndarray], path: Path, fps: float) -> int:
    from PIL import Image

    images = [Image.fromarray(frame) for frame in frames]
    if not images:
        raise ValueError("no frames to write")
    images[0].save(
        path,
        save_all=True,
        append_images=images[1:],
        duration=max(1, round(1000.0 / fps)),
        loop=0,
    )
    return len(images)


def save_frames_png(
    env: SimEnv,
    physics: np.ndarray,
    out_dir: str | Path,
    steps: Iterable[int],
    width: int = 320,
    height: int = 240,
    camera: int | str = -1,
) -> list[Path]:
    """Render the given step indices of an episode to ``out_dir/frame_<step>.png``."""
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    physics = np.asarray(physics, dtype=np.float64)
    paths = []
    for step in steps:
        if not 0 <= step < len(physics):
            raise ValueError(f"step {step} outside the episode (0..{len(physics) - 1})")
        (frame,) = frames_from_physics(env, physics[step : step + 1], width, height, camera)
        path = out / f"frame_{step:06d}.png"
        Image.fromarray(frame).save(path)
        paths.append(path)
    return paths
