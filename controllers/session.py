"""A sim-control session: simulator + controller in this process, the model in a node process.

What ``python launch/sim_control.py`` runs. It starts (or connects to) an inference node,
checks that the served model fits the task before the loop starts, runs the episodes,
records them, and writes the run directory (see :mod:`controllers.report`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from calibration.io_map import MappedEnv, load_io_map, mapped_env
from controllers.loop import Controller, ControllerConfig, EpisodeResult
from controllers.recorder import EpisodeRecorder
from controllers.reference import ReferenceTrajectory
from controllers.timing import set_realtime_priority
from mtm_robot.config import at_least, one_of, positive
from mtm_robot.errors import MTMRobotError, SpecMismatchError
from mtm_robot.return_target import default_return_target
from mtm_robot.serving.client import NodeClient
from mtm_robot.serving.process import NodeProcess, NodeSupervisor, open_node
from sim import registry

log = logging.getLogger(__name__)
#: Reset seeds of sim_control evaluation episodes (see docs/datasets.md for the other ranges).
EVALUATION_SEED_BASE = 40_000_000
SHIPPED_DEMOS = Path(str(resources.files("sim.experts")))


@dataclass
class SessionConfig:
    task: str = "walker"
    checkpoint: str = "default"  # served by a node this session starts
    server: str = ""  # or an already running node: tcp://host:port
    episodes: int = 3
    seed: int = EVALUATION_SEED_BASE  # episode i resets with seed + i
    target_return: float | None = None  # None: the top of the training return range
    target_fraction: float = 1.0  # target = min + fraction * (max - min) when not given
    reference: str = ""  # episode .npz whose states inverse_dynamics tracks ("": the task's
    # shipped action-free demonstration, sim/experts/<task>/demos/episode_000000.npz)
    reference_indexing: str = "nearest"
    io_map: str = ""  # I/O map YAML between the task's raw I/O and the model (calibration/)
    record: str = ""  # episode-store directory for the recorded episodes
    node_args: list[str] = field(default_factory=list)  # extra launch/serve.py arguments
    node_ready_timeout_s: float = 180.0
    node_restarts: int = 1  # restarts of a node this session started, after it dies; then
    # (or with 0, at the first death) the run ends with the reason in summary.json
    rt_priority: int = 0  # >0: SCHED_FIFO priority for the loop and the node (needs root)
    controller: ControllerConfig = field(default_factory=ControllerConfig)

    def __post_init__(self) -> None:
        at_least(1, episodes=self.episodes)
        at_least(0, seed=self.seed, rt_priority=self.rt_priority)
        positive(node_ready_timeout_s=self.node_ready_timeout_s)
        one_of("reference_indexing", self.reference_indexing, ("nearest", "time"))


@dataclass
class SessionResult:
    task: str
    model: dict[str, Any]
    episodes: list[EpisodeResult]
    summaries: list[dict[str, Any]]
    wall_s: float
    recording_error: str = ""  # why --record stopped writing (a full disk); "" when it did not
    ended_by: str = ""  # why the run stopped early (the node is gone); "" when it did not
    node_events: list[dict[str, Any]] = field(default_factory=list)  # died / restarted / lost


def check_model_fits_task(
    metadata: dict[str, Any], observation_dim: int, action_dim: int, mode: str, task: str
) -> None:
    """Fail before the loop when the served model cannot control this task."""
    dims = metadata.get("modalities", {})
    for name, expected in (("states", observation_dim), ("actions", action_dim)):
        if dims.get(name) != expected:
            raise SpecMismatchError(
                f"model '{metadata.get('model_id')}' has {name} dim {dims.get(name)} but task "
                f"'{task}' has {expected}; pass a checkpoint trained on this task (--checkpoint)"
            )
    if mode not in metadata.get("modes", []):
        raise SpecMismatchError(
            f"model '{metadata.get('model_id')}' does not serve mode "
            f"'{mode}' (modes: {metadata.get('modes')})"
        )


def run_session(config: SessionConfig, run_dir: Path, progress: bool = True) -> SessionResult:
    """Run the episodes; raises a clear error for anything wrong before the loop starts."""
    c = config
    env: Any
    try:
        env = registry.make(c.task)
    except KeyError as exc:  # an unknown task: the message lists the known ones
        raise MTMRobotError(str(exc.args[0])) from exc
    task = env.task
    if c.io_map:  # the one place an I/O map is applied: the loop sees the model's units
        try:
            env = mapped_env(env, load_io_map(c.io_map))
        except Exception:
            env.close()
            raise
        if env.max_action_delta is not None:  # the map's rate limits, in model units
            limits = [c.controller.max_action_delta, env.max_action_delta]
            c.controller.max_action_delta = min(x for x in limits if x is not None)
    reference = None
    if c.controller.mode == "inverse_dynamics":
        if not c.reference:
            shipped = SHIPPED_DEMOS / env.task / "demos" / "episode_000000.npz"
            if not shipped.is_file():
                raise MTMRobotError(
                    f"inverse_dynamics tracks a reference and no demonstration "
                    f"ships for '{env.task}': pass --reference EPISODE.npz"
                )
            c.reference = str(shipped)
        try:
            reference = ReferenceTrajectory.from_file(c.reference, c.reference_indexing)
        except ValueError as exc:
            raise MTMRobotError(f"bad reference file: {exc}") from exc
    node: NodeProcess | None = None
    watch: NodeSupervisor | None = None
    ended_by = ""
    recorder: EpisodeRecorder | None = None
    start = time.perf_counter()
    try:
        endpoint, metadata, node = open_node(
            c.server,
            c.checkpoint,
            run_dir / "node.log",
            c.node_args,
            c.node_ready_timeout_s,
            c.rt_priority,
        )
        if node is not None:  # a death is reported within 0.1 s, the node restarted
            watch = NodeSupervisor(node, c.node_restarts, c.node_ready_timeout_s).start()
        if isinstance(env, MappedEnv):
            env.io_map.check_model(metadata)
        check_model_fits_task(
            metadata, env.observation_dim, env.action_dim, c.controller.mode, task
        )
        if reference is not None and reference.dim != env.observation_dim:
            raise MTMRobotError(
                f"bad reference file {c.reference}: states have dim "
                f"{reference.dim}, task '{task}' has {env.observation_dim}"
            )
        c.controller.target_return = default_return_target(
            metadata, c.target_fraction, c.target_return
        )
        if c.rt_priority and c.controller.realtime and not set_realtime_priority(c.rt_priority):
            log.warning(
                "realtime priority %d not permitted: the loop runs at normal priority",
                c.rt_priority,
            )
        state_std = metadata.get("state_std")
        results, summaries = [], []
        if c.record:
            recorder = EpisodeRecorder(c.record)
        with NodeClient(endpoint, timeout_ms=c.controller.lockstep_timeout_ms) as client:
            client.wait_ready(timeout_s=c.node_ready_timeout_s)  # connected and warm
            controller = Controller(
                env,
                client,
                c.controller,
                reference,
                state_scale=np.asarray(state_std) if state_std else None,
                recorder=recorder,
                node=watch,
            )
            for i in range(c.episodes):
                if recorder is not None and recorder.error:
                    break  # the episodes asked to be recorded can't be: stop (the error says why)
                result = controller.run_episode(c.seed + i)
                summary = result.summary()
                summary["normalized_score"] = registry.normalized_score(task, result.episode_return)
                results.append(result)
                summaries.append(summary)
                if progress:
                    print(
                        f"episode {i + 1}/{c.episodes}: return {result.episode_return:.1f} "
                        f"(score {summary['normalized_score']:.1f}), "
                        f"{summary['deadline_misses']} misses",
                        flush=True,
                    )
                if result.ended_by:  # the node is gone for good: no further episode
                    ended_by = result.ended_by
                    break
    finally:
        if recorder is not None:
            recorder.close()
            if recorder.dropped_steps:
                log.warning("recorder dropped %d steps (queue full)", recorder.dropped_steps)
        if watch is not None:  # first: stopping the node is not a death
            watch.close()
        if node is not None:
            node.stop()
        env.close()
    recording_error = recorder.error if recorder is not None else ""
    wall_s = time.perf_counter() - start
    events = watch.events if watch is not None else []
    return SessionResult(
        task, metadata, results, summaries, wall_s, recording_error, ended_by, events
    )
