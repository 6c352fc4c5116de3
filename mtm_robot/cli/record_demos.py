"""Record action-free demonstrations: states (and rewards when known), never actions.

Sources:
  expert  the task's shipped expert acts in the simulator; its actions are withheld. Episode i
          resets with seed 30_000_000 + S * 1_000_000 + i and samples actions from
          default_rng([S, i]), so with --seed S it reproduces `mtm-collect --recipe
          expert --seed S --drop-actions` state for state.
  zmq     an external demonstrator (robot stack, motion capture) PUSHes one `state` message per
          step and an `end` message per episode (docs/protocol.md, section 11); this process
          PULLs them (binds --bind, default tcp://127.0.0.1:5570, or connects --connect).

Every episode goes through the recorder (crash-safe chunks every --flush-interval-s; a crash
loses at most that much). A dropped connection (no message for --timeout-s), a state of the
wrong dimension, NaN, a gap in the step counter or a malformed message closes the open episode
cleanly; its metadata says why (`reason`, `reason_detail`, `ended_cleanly`). Episodes whose
messages carried no reward are written without a `rewards` array.

Examples:
  mtm-record-demos --task walker --source expert --out runs/demos --episodes 5
  mtm-record-demos --task walker --source zmq --out runs/robot-demos \\
      --bind tcp://127.0.0.1:5570 --episodes 10 --idle-timeout-s 60
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np

from controllers.recorder import EpisodeRecorder, RecorderConfig
from mtm_robot import atomic
from mtm_robot.cli import check_output_dir, run
from mtm_robot.config import from_dict
from mtm_robot.data.episodes import episode_paths, load_episode, save_episode
from mtm_robot.errors import MTMRobotError
from mtm_robot.serving.state_stream import (
    DEFAULT_ENDPOINT,
    EpisodeSummary,
    Event,
    StateReceiver,
    StateStep,
    StreamEnd,
    StreamRecording,
    record_stream,
)
from sim import registry
from sim.datasets import (
    PolicySource,
    RecipeActors,
    default_policy_dir,
    require_policies,
    reset_seed,
    rollout,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--task", default="walker", help="registered task (default: walker)")
    p.add_argument("--source", required=True, choices=("expert", "zmq"), help="demonstrator")
    p.add_argument("--out", type=Path, required=True, help="episode-store directory (appended)")
    p.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="episodes to record (expert: default 5; zmq: default 0 = until stopped or idle)",
    )
    p.add_argument("--seed", type=int, default=3, help="expert: dataset seed (default 3)")
    p.add_argument(
        "--policy-dir",
        type=Path,
        help="expert: folder holding expert.safetensors (default: shipped)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--bind", help=f"zmq: endpoint to bind the PULL socket on "
                       f"(default {DEFAULT_ENDPOINT})")  # fmt: skip
    where.add_argument("--connect", help="zmq: endpoint of a demonstrator whose PUSH is bound")
    p.add_argument(
        "--timeout-s",
        type=float,
        default=1.0,
        help="zmq: close the open episode after this long without a message (default 1.0)",
    )
    p.add_argument(
        "--idle-timeout-s",
        type=float,
        default=0.0,
        help="zmq: stop after this long without a message and no open episode (0: never)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="zmq: allow --bind on a non-loopback address (the stream is not encrypted)",
    )
    p.add_argument("--demonstrator", default="external", help="zmq: id stored as policy_id")
    p.add_argument("--flush-interval-s", type=float, default=1.0, help="recorder flush interval")
    args = p.parse_args(argv)
    if args.source == "expert" and (args.bind or args.connect):
        p.error("--bind/--connect apply to --source zmq only")
    if args.episodes is None:
        args.episodes = 5 if args.source == "expert" else 0
    if args.episodes < 0 or (args.source == "expert" and args.episodes == 0):
        p.error("--episodes must be positive (zmq: 0 means no limit)")
    if args.timeout_s <= 0:
        p.error("--timeout-s must be positive")
    return args


def expert_events(
    task: str, episodes: int, seed: int, policy_dir: Path
) -> Iterator[tuple[dict[str, Any], list[Event]]]:
    """(episode metadata, events) of each expert episode, actions withheld."""
    with registry.make(task) as env:
        actors = RecipeActors(env, "expert", PolicySource(policy_dir))
        for index in range(episodes):
            act, policy_id = actors.for_episode(index)
            result = rollout(
                env, act, reset_seed(seed, index), np.random.default_rng([seed, index])
            )
            meta = {
                "task": env.task,
                "source": "expert",
                "recipe": "expert",
                "policy_id": policy_id,
                "actions_withheld": True,
                "action_mode": "sample",
                "control_hz": env.control_hz,
                "seed": reset_seed(seed, index),
                "dataset_seed": seed,
                "episode_index": index,
                "observation_names": list(getattr(env, "observation_names", ())),
            }
            events: list[Event] = [
                StateStep(
                    str(index),
                    t,
                    result.states[t],
                    float(result.rewards[t]),
                    t / env.control_hz,
                    result.physics[t],
                )
                for t in range(len(result.states))
            ]
            events.append(StreamEnd(str(index), result.terminated, result.truncated))
            yield meta, events


def strip_unknown_rewards(paths: list[Path]) -> int:
    """Rewrite episodes marked ``rewards_known: false`` without a rewards array."""
    count = 0
    for path in paths:
        episode = load_episode(path)
        if episode.meta.get("rewards_known", True) or episode.rewards is None:
            continue
        episode.rewards = None
        episode.telemetry.pop("reward", None)
        save_episode(path, episode)
        count += 1
    return count


def record(args: argparse.Namespace) -> tuple[list[EpisodeSummary], str]:
    """Record the episodes; returns their summaries and the write error that stopped the
    recorder ("" when none: a full disk stops it, see controllers/recorder.py)."""
    task = registry.resolve(args.task)
    check_output_dir(args.out, "--out")
    flush = {"flush_interval_s": args.flush_interval_s}
    recorder_config = from_dict(RecorderConfig, flush, "--flush-interval-s")
    if args.source == "expert":
        require_policies(task, "expert", args.policy_dir)
    before = set(episode_paths(args.out)) if args.out.is_dir() else set()
    recorder = EpisodeRecorder(args.out, recorder_config)
    recording = StreamRecording(recorder)
    try:
        if args.source == "expert":
            policy_dir = args.policy_dir or default_policy_dir(task)
            for meta, events in expert_events(task, args.episodes, args.seed, policy_dir):
                recording.meta = meta
                for event in events:
                    recording.apply(event)
                print(f"episode {meta['episode_index']}: {len(events) - 1} steps", flush=True)
        else:
            with registry.make(task) as env:
                state_dim, control_hz = env.observation_dim, env.control_hz
            endpoint = args.connect or args.bind or DEFAULT_ENDPOINT
            recording.meta = {"task": task, "source": f"zmq:{endpoint}", "control_hz": control_hz,
                              "policy_id": args.demonstrator, "actions_withheld": True}  # fmt: skip
            stop = {"now": False}

            def request_stop(signum: int, _frame: object) -> None:
                stop["now"] = True

            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, request_stop)
                signal.signal(signal.SIGTERM, request_stop)
            with StateReceiver(
                endpoint, state_dim, bind=args.connect is None, insecure=args.insecure
            ) as receiver:
                print(f"recording {task} states ({state_dim}-d) from {receiver.endpoint} "
                      f"into {args.out}", flush=True)  # fmt: skip
                record_stream(
                    receiver,
                    recording,
                    episodes=args.episodes,
                    timeout_s=args.timeout_s,
                    idle_timeout_s=args.idle_timeout_s,
                    should_stop=lambda: stop["now"],
                )
    finally:
        recording.close("interrupted", "recorder stopped")
        recorder.close()
    if recorder.dropped_steps:
        print(f"warning: the recorder dropped {recorder.dropped_steps} steps (queue full)")
    for error in recorder.errors:
        if error != recorder.error:  # that one ends the run (main)
            print(f"warning: recorder write error: {error}")
    written = sorted(set(episode_paths(args.out)) - before)
    stripped = 0 if recorder.error else strip_unknown_rewards(written)  # no rewrite on a full disk
    if stripped:
        print(f"{stripped} episodes carried no rewards: written without a rewards array")
    if recording.discarded:
        print(f"{recording.discarded} messages discarded (closed or unreadable episodes)")
    return recording.summaries, recorder.error


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summaries, recording_error = record(args)
    rows = []
    for s in summaries:
        ret = "" if s.return_ is None else f", return {s.return_:.1f}"
        detail = f" ({s.detail})" if s.detail else ""
        name = Path(s.path).name if s.path and Path(s.path).is_file() else ""  # never a part
        shown = name or ("(not written)" if s.path else "-")
        print(f"{shown}: {s.steps} steps{ret}, closed by {s.reason}{detail}")
        rows.append({"file": name, "stream_episode": s.episode, "steps": s.steps,
                     "reason": s.reason, "detail": s.detail, "return": s.return_})  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        atomic.write_text(args.out / "record_summary.json", json.dumps(rows, indent=2) + "\n")
    except OSError as exc:  # a full disk: the recorder's error below says what was kept
        if not recording_error:
            raise
        print(f"warning: record_summary.json not written ({exc.strerror or exc})")
    if recording_error:
        raise MTMRobotError(recording_error)
    print(f"{len(summaries)} action-free episodes in {args.out}")
    return 0


def entry() -> NoReturn:
    """The ``mtm-record-demos`` command (``python launch/record_demos.py`` from a checkout)."""
    run(main)
