"""Render a recorded episode offscreen from its physics states.

    mtm-render EPISODE.npz --out video.mp4            # needs imageio-ffmpeg
    mtm-render EPISODE.npz --out video.gif --stride 2 # Pillow only
    mtm-render EPISODE.npz --png-dir frames --png-steps 0 250 500 999

The episode must hold a ``physics`` array (collected episodes do) and its task in
``meta["task"]``. Frames are rendered by restoring each recorded physics state, so the video
shows exactly what was recorded. Uses MUJOCO_GL=egl unless MUJOCO_GL is already set (no
display needed). Playback runs in real time: fps = control rate / stride.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import NoReturn

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

from tqdm import tqdm

from mtm_robot.cli import check_output_dir, run
from mtm_robot.data.episodes import load_episode
from mtm_robot.errors import DataError
from sim.registry import make
from sim.render import frames_from_physics, save_frames_png, write_video


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("episode", help="episode .npz file written by the episode store")
    parser.add_argument("--out", help="video file to write (.mp4 or .gif)")
    parser.add_argument("--width", type=int, default=320, help="frame width in pixels")
    parser.add_argument("--height", type=int, default=240, help="frame height in pixels")
    parser.add_argument("--camera", default="-1", help="camera id or name (-1: task default)")
    parser.add_argument("--stride", type=int, default=1, help="render every Nth step")
    parser.add_argument("--max-steps", type=int, default=None, help="render at most N steps")
    parser.add_argument("--png-dir", help="also save the --png-steps frames as PNG here")
    parser.add_argument(
        "--png-steps", type=int, nargs="*", default=None, help="steps to save as PNG (default: 4)"
    )
    args = parser.parse_args(argv)
    if not args.out and not args.png_dir:
        parser.error("give --out and/or --png-dir")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_output_dir(args.png_dir, "--png-dir")
    episode = load_episode(args.episode)
    if episode.physics is None:
        raise DataError(f"{args.episode}: no physics array to render (was it recorded in sim?)")
    task = episode.meta.get("task")
    if not task:
        raise DataError(f"{args.episode}: meta has no 'task'")
    camera: int | str = int(args.camera) if args.camera.lstrip("-").isdigit() else args.camera
    physics = episode.physics[: args.max_steps]
    with make(task) as env:
        if args.out:
            n_frames = (len(physics) + args.stride - 1) // args.stride
            fps = env.control_hz / args.stride
            frames = frames_from_physics(env, physics, args.width, args.height, camera, args.stride)
            started = time.perf_counter()
            count = write_video(
                tqdm(frames, total=n_frames, desc="render", unit="frame"), args.out, fps
            )
            elapsed = time.perf_counter() - started
            print(
                f"wrote {count} frames ({fps:g} fps) to {args.out} in {elapsed:.1f} s "
                f"({1000 * elapsed / max(count, 1):.0f} ms/frame)"
            )
        if args.png_dir:
            steps = args.png_steps
            if steps is None:
                steps = [round(i * (len(physics) - 1) / 3) for i in range(4)]
            paths = save_frames_png(
                env, physics, args.png_dir, steps, args.width, args.height, camera
            )
            print(f"saved {len(paths)} PNG frames to {args.png_dir}")
    return 0


def entry() -> NoReturn:
    """The ``mtm-render`` command (``python launch/render.py`` from a checkout)."""
    run(main)
