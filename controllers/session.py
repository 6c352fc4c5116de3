"""A control session: robot + controller in this process, the model in a node process.

What ``python launch/sim_control.py`` runs. It starts (or connects to) an inference node,
checks that the served model fits the robot before the loop starts, runs the episodes,
records them, and writes the run directory (see :mod:`controllers.report`).

The robot is the registered simulator task ``config.task`` (built through ``sim.registry``,
imported only then), or any :class:`~controllers.robot.Robot` the caller passes in: a real
robot's driver runs the same session without MuJoCo installed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from controllers.io_map import MappedEnv, load_io_map, mapped_env
from controllers.loop import Controller, ControllerConfig, EpisodeResult
from controllers.recorder import EpisodeRecorder
from controllers.reference import ReferenceTrajectory
from controllers.robot import Robot
from controllers.timing import set_realtime_priority
from controllers.viz import RerunView, check_target
from mtm_robot.checkpoint_meta import resolve_checkpoint_path, shipped_tasks
from mtm_robot.config import at_least, one_of, positive
from mtm_robot.errors import MTMRobotError, SpecMismatchError
from mtm_robot.return_target import default_return_target, to_model_units
from mtm_robot.serving.config import BACKENDS
from mtm_robot.serving.process import NodeProcess, NodeSupervisor, open_node
from mtm_robot_client import NodeClient
from mtm_robot_client.modes import MODES, RETURN_UNITS

log = logging.getLogger(__name__)
#: Reset seeds of sim_control evaluation episodes (see docs/datasets.md for the other ranges).
EVALUATION_SEED_BASE = 40_000_000
#: ``SessionResult.ended_by`` of a run stopped by Ctrl-C.
INTERRUPTED = "interrupted"


@dataclass
class SessionConfig:
    """A control session: the task, the model (a node it starts, or a running one), the
    episodes and the controller. ``mtm-sim-control`` derives its flags from these fields."""

    task: str = "walker"
    """registered task, e.g. walker, walker-run, Hopper-v5"""
    checkpoint: str = "default"
    """checkpoint served by a node this session starts ("default": the task's shipped model)"""
    server: str = ""
    """use a running node (tcp://host:port) instead of starting one"""
    episodes: int = 3
    """episodes to run"""
    seed: int = EVALUATION_SEED_BASE
    """reset seed of the first episode (episode i resets with seed + i)"""
    target_return: float | None = None
    """return target, in target_return_units (None: the top of the training return range)"""
    target_return_units: str = "model"
    """units of target_return: model (the checkpoint's own), normalized (0 the bottom, 1 the top
    of the training returns) or episode_return (a whole episode's return)"""
    target_fraction: float = 1.0
    """without a target: target = min + fraction * (max - min) of the training returns"""
    reference: str = ""
    """episode .npz whose states inverse_dynamics tracks ("": the task's shipped demo)"""
    reference_indexing: str = "nearest"
    """follow the reference by the nearest recorded state (nearest) or by the step (time)"""
    io_map: str = ""
    """I/O map YAML between the robot's raw I/O and the model (mtm-calibrate writes one)"""
    record: str = ""
    """write the episodes to this episode-store directory"""
    backend: str = "onnx"
    """inference backend of the node this session starts: onnx (the fastest on a CPU, equal to
    torch within 1e-4 in every mode; the graph is exported once into the user cache) or torch"""
    node_args: list[str] = field(default_factory=list)
    """extra mtm-serve arguments for the node this session starts (a --backend or --config in
    them replaces --backend)"""
    node_ready_timeout_s: float = 180.0
    """how long the started node may take to load and warm up"""
    node_restarts: int = 1
    """restarts of the node this session started, after it dies (then the run ends)"""
    rt_priority: int = 0
    """SCHED_FIFO priority (1-99) for the loop and the node (needs root; 0: normal)"""
    viz: str = ""
    """live view with rerun (the viz extra): FILE.rrd, 'live' (spawn a viewer), or a viewer's
    rerun+http://HOST:PORT/proxy ("": none)"""
    viz_frames_every: int = 0
    """--viz: a camera frame every N ticks, rendered from the physics after each episode
    (about 130 ms a frame on CPU; 0: none)"""
    controller: ControllerConfig = field(default_factory=ControllerConfig)

    def __post_init__(self) -> None:
        at_least(1, episodes=self.episodes)
        at_least(0, seed=self.seed, rt_priority=self.rt_priority)
        at_least(0, viz_frames_every=self.viz_frames_every)
        check_target(self.viz)
        positive(node_ready_timeout_s=self.node_ready_timeout_s)
        one_of("reference_indexing", self.reference_indexing, ("nearest", "time"))
        one_of("backend", self.backend, BACKENDS)
        one_of("target_return_units", self.target_return_units, RETURN_UNITS)


@dataclass
class SessionResult:
    task: str
    model: dict[str, Any]
    episodes: list[EpisodeResult]
    summaries: list[dict[str, Any]]
    wall_s: float
    recording_error: str = ""  # why --record stopped writing (a full disk); "" when it did not
    #: why the run stopped early ("" when it did not): the node is gone, or ``interrupted``
    #: (Ctrl-C: the episodes finished before it are the result)
    ended_by: str = ""
    node_events: list[dict[str, Any]] = field(default_factory=list)  # died / restarted / lost
    #: the return target as given (``given``, ``units``; None: the default rule) and in the
    #: model's units (``model``, what the loop sends); {} for modes without one
    return_target: dict[str, Any] = field(default_factory=dict)


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


def make_task(task: str) -> Robot:
    """The registered simulator task ``task`` (``sim`` is imported here, not before)."""
    from sim import registry

    try:
        return registry.make(task)
    except KeyError as exc:  # an unknown task: the message lists the known ones
        raise MTMRobotError(str(exc.args[0])) from exc


def normalized_score(task: str, episode_return: float) -> float:
    """The registry's normalised score of a simulator task; nan for a task it cannot score
    (no reference returns, not registered, or no simulators installed)."""
    try:
        from sim import registry
    except ImportError:  # a robot computer without the simulators
        return float("nan")
    try:
        return registry.normalized_score(task, episode_return)
    except KeyError:
        return float("nan")


def shipped_demonstration(task: str) -> Path | None:
    """The task's shipped action-free demonstration
    (``sim/experts/<task>/demos/episode_000000.npz``), if one ships."""
    try:
        root = resources.files("sim.experts")
    except ImportError:  # no simulators installed: no shipped demonstrations either
        return None
    path = Path(str(root)) / task / "demos" / "episode_000000.npz"
    return path if path.is_file() else None


def _apply_io_map(env: Robot, c: SessionConfig) -> MappedEnv:
    """The one place an I/O map is applied: the loop sees the model's units."""
    mapped = mapped_env(env, load_io_map(c.io_map))
    if mapped.max_action_delta is not None:  # the map's rate limits, in model units
        limits = [c.controller.max_action_delta, mapped.max_action_delta]
        c.controller.max_action_delta = min(x for x in limits if x is not None)
    return mapped


def _load_reference(c: SessionConfig, task: str) -> ReferenceTrajectory:
    """inverse_dynamics: the reference to track (default: the task's shipped demonstration)."""
    if not c.reference:
        shipped = shipped_demonstration(task)
        if shipped is None:
            raise MTMRobotError(
                f"inverse_dynamics tracks a reference and no demonstration "
                f"ships for '{task}': pass --reference EPISODE.npz"
            )
        c.reference = str(shipped)
    try:
        return ReferenceTrajectory.from_file(c.reference, c.reference_indexing)
    except ValueError as exc:
        raise MTMRobotError(f"bad reference file: {exc}") from exc


@dataclass(frozen=True)
class EpisodeDone:
    """One finished episode of a session, as handed to ``run_session``'s ``on_episode``."""

    index: int  # 0-based
    episodes: int  # how many the session runs
    result: EpisodeResult
    summary: dict[str, Any]  # result.summary() plus normalized_score

    def line(self) -> str:
        """One progress line: ``episode 1/3: return 950.2 (score 95.0), 0 misses``."""
        return (
            f"episode {self.index + 1}/{self.episodes}: return {self.result.episode_return:.1f} "
            f"(score {self.summary['normalized_score']:.1f}), "
            f"{self.summary['deadline_misses']} misses"
        )


@dataclass
class _Opened:
    """What a session opens and must close, in order (:meth:`close`)."""

    env: Robot
    owns_env: bool  # the session built it; a robot passed in stays the caller's
    node: NodeProcess | None = None
    watch: NodeSupervisor | None = None
    recorder: EpisodeRecorder | None = None
    view: RerunView | None = None
    frames_env: Robot | None = None  # renders the view's camera frames

    def close(self) -> None:
        if self.view is not None:
            self.view.close()
        if self.frames_env is not None:
            self.frames_env.close()
        if self.recorder is not None:
            self.recorder.close()
            if self.recorder.dropped_steps:
                log.warning("recorder dropped %d steps (queue full)", self.recorder.dropped_steps)
        if self.watch is not None:  # first: stopping the node is not a death
            self.watch.close()
        if self.node is not None:
            self.node.stop()
        if self.owns_env:
            self.env.close()


def run_session(
    config: SessionConfig,
    run_dir: Path,
    progress: bool = True,
    robot: Robot | None = None,
    keep_physics: bool = True,
    on_episode: Callable[[EpisodeDone], None] | None = None,
) -> SessionResult:
    """Run the episodes; raises a clear error for anything wrong before the loop starts.

    ``progress``: log one line per episode (INFO). ``on_episode``: called after each episode
    (a launcher prints :meth:`EpisodeDone.line`).
    ``robot``: drive this robot (any :class:`~controllers.robot.Robot`; the caller owns and
    closes it) instead of building ``config.task`` from the simulator registry.
    ``keep_physics``: keep every tick's physics state in the episode results (a simulator's,
    for a video afterwards); a recording stores it either way, and a robot without one has none.
    ``config.viz``: every tick goes to a rerun view too (:mod:`controllers.viz`).
    """
    c = config
    env, reference = _open_robot(c, robot)
    task = env.task
    opened = _Opened(env, owns_env=robot is None)
    start = time.perf_counter()
    try:
        endpoint, metadata = _start_node(c, run_dir, opened)
        _check_before_loop(c, env, metadata, reference)
        _configure_control(c, metadata)
        if c.record:
            opened.recorder = EpisodeRecorder(c.record)
        if c.viz:
            opened.view = _open_view(c, env, opened)
        with NodeClient(endpoint, timeout_ms=c.controller.lockstep_timeout_ms) as client:
            client.wait_ready(timeout_s=c.node_ready_timeout_s)  # connected and warm
            state_std = metadata.get("state_std")
            controller = Controller(
                env,
                client,
                c.controller,
                reference,
                state_scale=np.asarray(state_std) if state_std else None,
                recorder=opened.recorder,
                node=opened.watch,
                keep_physics=keep_physics or bool(opened.view and opened.view.render_frames),
                observers=[opened.view] if opened.view is not None else [],
            )
            done, ended_by = _run_episodes(
                c, controller, task, opened.recorder, progress, on_episode
            )
    finally:
        opened.close()
    wall_s = time.perf_counter() - start
    return SessionResult(
        task,
        metadata,
        [d.result for d in done],
        [d.summary for d in done],
        wall_s,
        opened.recorder.error if opened.recorder is not None else "",
        ended_by,
        opened.watch.events if opened.watch is not None else [],
        _return_target(c),
    )


def _return_target(c: SessionConfig) -> dict[str, Any]:
    """``SessionResult.return_target``: as given and as sent."""
    if not MODES[c.controller.mode].needs_return_target:
        return {}
    return {
        "given": c.target_return,
        "units": c.target_return_units if c.target_return is not None else "model",
        "model": c.controller.target_return,
    }


def _open_robot(c: SessionConfig, robot: Robot | None) -> tuple[Robot, ReferenceTrajectory | None]:
    """The robot the loop drives (its I/O map applied) and, for inverse_dynamics, the
    reference it tracks; a robot the session built is closed again if this fails."""
    env: Robot = robot if robot is not None else make_task(c.task)
    try:
        if c.io_map:
            env = _apply_io_map(env, c)
        reference = None
        if "future_states" in MODES[c.controller.mode].arrays:  # desired states to track
            reference = _load_reference(c, env.task)
    except Exception:
        if robot is None:
            env.close()
        raise
    return env, reference


def served_checkpoint(checkpoint: str, task: str) -> str:
    """``default`` -> the model shipped for ``task`` when one ships, else the walker-walk
    model (whose dims the model-fit check then compares); any other value unchanged."""
    if checkpoint == "default" and task in shipped_tasks():
        return str(resolve_checkpoint_path(checkpoint, task))
    if checkpoint == "default":
        log.debug("no model ships for %s (shipped: %s): serving the walker-walk model",
                 task, ", ".join(shipped_tasks()))  # fmt: skip
    return checkpoint


def _open_view(c: SessionConfig, env: Robot, opened: _Opened) -> RerunView:
    """The rerun view of ``--viz``; its camera frames come from a second copy of the task."""
    render = None
    if c.viz_frames_every and not opened.owns_env:
        log.warning("--viz-frames-every: no frames of a robot passed in (no simulator to render)")
    elif c.viz_frames_every:
        from sim.render import frames_from_physics

        frames_env = opened.frames_env = make_task(c.task)

        def render(physics: np.ndarray, stride: int) -> Iterable[np.ndarray]:
            return frames_from_physics(frames_env, physics, stride=stride)  # type: ignore[arg-type]

    rate_hz = c.controller.control_hz or env.control_hz
    return RerunView(
        c.viz,
        task=env.task,
        render_frames=render,
        frames_every=c.viz_frames_every,
        budget_s=1 / rate_hz - c.controller.deadline_margin_ms / 1e3
        if c.controller.realtime
        else None,
    )


def node_arguments(c: SessionConfig) -> list[str]:
    """The mtm-serve arguments of the node this session starts: ``--backend`` unless
    ``node_args`` choose one (a ``--backend`` flag, or a ``--config`` preset)."""
    names = {a.split("=", 1)[0] for a in c.node_args}
    if names & {"--backend", "--backend.backend", "--config"}:
        return list(c.node_args)
    return ["--backend", c.backend, *c.node_args]


def _start_node(c: SessionConfig, run_dir: Path, opened: _Opened) -> tuple[str, dict[str, Any]]:
    """Start (or connect to) the node; a node this session started is watched."""
    endpoint, metadata, opened.node = open_node(
        c.server,
        served_checkpoint(c.checkpoint, opened.env.task),
        run_dir / "node.log",
        node_arguments(c),
        c.node_ready_timeout_s,
        c.rt_priority,
    )
    if opened.node is not None:  # a death is reported within 0.1 s, the node restarted
        opened.watch = NodeSupervisor(opened.node, c.node_restarts, c.node_ready_timeout_s).start()
    return endpoint, metadata


def _check_before_loop(
    c: SessionConfig,
    env: Robot,
    metadata: dict[str, Any],
    reference: ReferenceTrajectory | None,
) -> None:
    """The served model fits the robot (and its I/O map), the reference fits the task."""
    if isinstance(env, MappedEnv):
        env.io_map.check_model(metadata)
    try:
        check_model_fits_task(
            metadata, env.observation_dim, env.action_dim, c.controller.mode, env.task
        )
    except SpecMismatchError as exc:
        if c.checkpoint != "default" or env.task in shipped_tasks():
            raise
        raise SpecMismatchError(
            f"no model ships for '{env.task}' (shipped: {', '.join(shipped_tasks())}) and {exc}. "
            f"Make one (mtm-tasks lists what ships): an expert if none ships, mtm-train-expert "
            f"--task {env.task} --out runs/{env.task}-sac then mtm-train-expert --ship "
            f"runs/{env.task}-sac; data, mtm-collect --task {env.task} --recipe expert "
            f"--episodes 50 --out data/{env.task}, mtm-train --data data/{env.task} --out "
            f"runs/mtm-{env.task}, then --checkpoint runs/mtm-{env.task}/checkpoints/latest"
        ) from exc
    if reference is not None and reference.dim != env.observation_dim:
        raise MTMRobotError(
            f"bad reference file {c.reference}: states have dim "
            f"{reference.dim}, task '{env.task}' has {env.observation_dim}"
        )


def _configure_control(c: SessionConfig, metadata: dict[str, Any]) -> None:
    """The return target in model units (the model's training returns unless given) and the
    loop priority."""
    given = None if c.target_return is None else model_target(c, metadata)
    c.controller.target_return = default_return_target(metadata, c.target_fraction, given)
    if c.rt_priority and c.controller.realtime and not set_realtime_priority(c.rt_priority):
        log.warning(
            "realtime priority %d not permitted: the loop runs at normal priority",
            c.rt_priority,
        )


def model_target(c: SessionConfig, metadata: dict[str, Any]) -> float:
    """``c.target_return`` (given in ``c.target_return_units``) in the served model's units,
    converted by the scale the node describes (its ``return_target`` metadata)."""
    assert c.target_return is not None
    if c.target_return_units == "model":
        return c.target_return
    scale = metadata.get("return_target") or {}
    if c.target_return_units not in scale.get("units", []):
        raise MTMRobotError(
            f"target_return_units {c.target_return_units!r}: model "
            f"'{metadata.get('model_id')}' converts only {scale.get('units', ['model'])} (no "
            "training return range, or returns not averaged over a known horizon); give the "
            "target in one of those"
        )
    lo, hi = scale["training_range"]
    return to_model_units(c.target_return, c.target_return_units, lo, hi, scale.get("horizon"))


def _run_episodes(
    c: SessionConfig,
    controller: Controller,
    task: str,
    recorder: EpisodeRecorder | None,
    progress: bool,
    on_episode: Callable[[EpisodeDone], None] | None,
) -> tuple[list[EpisodeDone], str]:
    """Episode ``i`` resets with ``seed + i``; stops early when the recording fails, the node
    is gone for good (returned: why it stopped early, or "") or on Ctrl-C (``interrupted``:
    the episode under way is dropped, the finished ones are the result)."""
    done: list[EpisodeDone] = []
    for i in range(c.episodes):
        if recorder is not None and recorder.error:
            break  # the episodes asked to be recorded can't be: stop (the error says why)
        try:
            result = controller.run_episode(c.seed + i)
            summary = result.summary()
            summary["normalized_score"] = normalized_score(task, result.episode_return)
            done.append(EpisodeDone(i, c.episodes, result, summary))
            if progress:
                log.info("%s", done[-1].line())
            if on_episode is not None:
                on_episode(done[-1])
        except KeyboardInterrupt:
            log.warning("interrupted: the %d finished episodes are the result", len(done))
            return done, INTERRUPTED
        if result.ended_by:  # the node is gone for good: no further episode
            return done, result.ended_by
    return done, ""
