"""Data in and out of the robot ecosystem's formats (docs/interop.md).

    mtm-interop rosbag-import BAG --topics /joint_states /imu --control-hz 40 \\
        --io-map robot_map.yaml --action-topic /cmd --out data/robot
    mtm-interop rosbag-export data/robot --out robot_mcap      # Foxglove, ros2 bag play
    mtm-interop lerobot-export data/w-expert --out w-expert-lerobot
    mtm-interop lerobot-import w-expert-lerobot --out data/w-from-lerobot
    mtm-interop minari-import mujoco/hopper/expert-v0 --out data/hopper-minari

Imports write an episode store (episode_<i>.npz); training also reads LeRobot folders and
``minari:ID`` directly (``mtm-train --data``). Each format needs its extra: ros (rosbags),
lerobot (pyarrow), minari (minari); ``pip install "mtm-robot[interop]"`` has them all.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from mtm_robot.cli import check_output_dir, run
from mtm_robot.data.episodes import Episode, episode_file, load_episodes, save_episode
from mtm_robot.errors import ConfigError


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from mtm_robot.data.rosbag import CLOCKS, RESAMPLE_METHODS

    parser = argparse.ArgumentParser(
        prog="mtm-interop",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    bag = sub.add_parser("rosbag-import", help="rosbag2 folder (sqlite3, MCAP) -> episode store")
    bag.add_argument("bag", type=Path, help="rosbag2 folder (with metadata.yaml)")
    bag.add_argument(
        "--topics",
        nargs="+",
        required=True,
        help="state topics, TOPIC or TOPIC=ALIAS (raw fields ALIAS.MEMBER)",
    )
    bag.add_argument("--control-hz", type=float, required=True, help="resampling rate")
    bag.add_argument("--io-map", type=Path, help="I/O map YAML (default: identity, topic order)")
    bag.add_argument("--action-topic", help="command topic read as actions (none: action-free)")
    bag.add_argument("--action-field", help="its member (default position, or its only one)")
    bag.add_argument(
        "--resample",
        choices=RESAMPLE_METHODS,
        default="zoh",
        help="zoh: latest message at or before each tick; linear: interpolate",
    )
    bag.add_argument(
        "--clock",
        choices=CLOCKS,
        default="header",
        help="message time: header.stamp (receive time without a header) or receive",
    )
    bag.add_argument(
        "--split-gap-s",
        type=float,
        help="a pause longer than this on any topic ends an episode (default: "
        "one bag, one episode)",
    )
    bag.add_argument("--joint-order", nargs="+", help="reorder JointState arrays by name")
    bag.add_argument("--task", default="", help="task name written into the episodes")
    bag.add_argument("--out", type=Path, required=True, help="episode store to write")
    mcap = sub.add_parser("rosbag-export", help="episode store -> rosbag2 folder, MCAP storage")
    mcap.add_argument("store", type=Path)
    mcap.add_argument("--out", type=Path, required=True, help="new rosbag2 folder")
    mcap.add_argument(
        "--episode-gap-s",
        type=float,
        default=1.0,
        help="pause between episodes in the bag (default 1 s)",
    )
    le_out = sub.add_parser("lerobot-export", help="episode store -> LeRobotDataset v3.0")
    le_out.add_argument("store", type=Path)
    le_out.add_argument("--out", type=Path, required=True, help="new dataset folder")
    le_out.add_argument("--task", default="", help="task description (default: the episodes')")
    le_out.add_argument("--robot-type", default=None)
    le_in = sub.add_parser("lerobot-import", help="LeRobotDataset (v3.0, v2.x) -> episode store")
    le_in.add_argument("root", type=Path)
    le_in.add_argument("--out", type=Path, required=True)
    mi = sub.add_parser("minari-import", help="local Minari dataset (id or folder) -> store")
    mi.add_argument("dataset", help="id in MINARI_DATASETS_PATH, or a dataset folder")
    mi.add_argument("--out", type=Path, required=True)
    return parser.parse_args(argv)


def _write_store(episodes: list[Episode], out: Path, source: object) -> None:
    if out.is_dir() and any(out.glob("episode_*.npz")):
        raise ConfigError(f"--out {out} already holds episodes; choose a new folder")
    for i, episode in enumerate(episodes):
        save_episode(episode_file(out, i), episode)
    steps = sum(len(e) for e in episodes)
    free = sum(e.actions is None for e in episodes)
    print(f"{source}: {len(episodes)} episodes, {steps} steps ({free} action-free) -> {out}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "rosbag-import":
        from controllers.io_map import load_io_map
        from mtm_robot.data.rosbag import import_bag

        check_output_dir(args.out, "--out")
        episodes = import_bag(
            args.bag,
            args.topics,
            args.control_hz,
            io_map=load_io_map(args.io_map) if args.io_map else None,
            action_topic=args.action_topic,
            action_field=args.action_field,
            method=args.resample,
            clock=args.clock,
            split_gap_s=args.split_gap_s,
            joint_order=args.joint_order,
            task=args.task,
        )
        _write_store(episodes, args.out, args.bag)
    elif args.command == "rosbag-export":
        from mtm_robot.data.rosbag import export_mcap

        out = export_mcap(load_episodes(args.store), args.out, args.episode_gap_s)
        print(f"{args.store} -> {out} (MCAP: open in Foxglove, or `ros2 bag play {out}`)")
    elif args.command == "lerobot-export":
        from mtm_robot.data.lerobot import export_lerobot

        root = export_lerobot(load_episodes(args.store), args.out, args.task, args.robot_type)
        print(f"{args.store} -> {root} (LeRobotDataset v3.0)")
    elif args.command == "lerobot-import":
        from mtm_robot.data.lerobot import load_lerobot

        check_output_dir(args.out, "--out")
        _write_store(load_lerobot(args.root), args.out, args.root)
    else:
        from mtm_robot.data.importers import load_minari_dataset

        check_output_dir(args.out, "--out")
        _write_store(load_minari_dataset(args.dataset), args.out, args.dataset)
    return 0


def entry() -> NoReturn:
    """The ``mtm-interop`` command."""
    run(main)
