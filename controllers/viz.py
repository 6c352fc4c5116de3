"""A live view of a control session with `rerun <https://rerun.io>`_ (the ``viz`` extra).

:class:`RerunView` is a :class:`~controllers.loop.TickObserver`: the control thread only appends
each tick's record to a bounded deque (if it is full the tick is dropped from the view and
counted, never waited for); a thread of its own logs the records to rerun. Where the view goes
(``--viz``): a ``FILE.rrd`` (open it later with ``rerun FILE.rrd``), ``live`` (spawn a viewer
on this machine, or use the one already listening on rerun's default port), or a running
viewer's ``rerun+http://HOST:PORT/proxy`` address.

What is logged, on the timelines ``tick`` (the session's tick count, across episodes) and
``time`` (the loop clock since the session's first tick: wall time in realtime, simulated time
in lockstep), at the entity paths in :data:`ENTITIES`: the observed state, the model's predicted
next state and the reference's target state (inverse_dynamics), the requested and applied
actions, the request latency beside its budget and the loop period, the fallback level and
whether the deadline was missed, the surprise, the reward, whether the node was down, and the
episode index; ``events`` has a line per episode and per change of fallback level.

Camera frames (``camera``) are rendered from the episode's recorded physics states after the
episode, every ``frames_every``-th tick (rendering takes about 130 ms a frame on one CPU core,
far more than a tick): never inside the loop. rerun is imported when a view opens, never with
this module, so ``controllers`` loads no viewer.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from controllers.fallback import LEVELS, MODEL_LEVEL
from controllers.loop import EpisodeResult, TickRecord
from mtm_robot.errors import ConfigError

log = logging.getLogger(__name__)

#: The entity paths of the scalar series (``camera`` and ``events`` come beside them).
ENTITIES = (
    "state/observed",
    "state/predicted",
    "state/target",
    "action/requested",
    "action/applied",
    "timing/latency_ms",
    "timing/budget_ms",
    "timing/period_ms",
    "fallback/level",
    "fallback/miss",
    "surprise",
    "reward",
    "node/down",
    "episode",
)
#: Renders ``physics[::stride]`` to (H, W, 3) uint8 frames (``sim.render.frames_from_physics``).
FrameRenderer = Callable[[np.ndarray, int], Iterable[np.ndarray]]
LIVE = "live"


def check_target(target: str) -> None:
    """``target`` is a place a view can go (see the module docstring), else a clear error."""
    if target and not (
        target == LIVE or target.endswith(".rrd") or target.startswith("rerun+http")
    ):
        raise ConfigError(
            f"viz must be a FILE.rrd, '{LIVE}' (spawn a viewer) or a viewer's "
            f"rerun+http://HOST:PORT/proxy address, got '{target}'"
        )


def _check_display() -> None:
    """``live`` spawns a viewer window: on Linux without a display it could only die."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        raise ConfigError(
            "--viz live spawns a viewer window and this machine has no display (DISPLAY and "
            "WAYLAND_DISPLAY unset): save to a FILE.rrd and open it with 'rerun FILE.rrd', or "
            "start 'rerun' on a machine with a screen and pass --viz rerun+http://HOST:9876/proxy"
        )


class RerunView:
    """Logs a session's ticks to rerun from a thread of its own (see the module docstring).

    ``target``: ``FILE.rrd``, ``live`` or ``rerun+http://...``. ``render_frames`` and
    ``frames_every``: camera frames from each episode's physics states after it ends (0: none).
    ``state_names``: one name per state dimension, for the plots' legends. ``budget_s``: a
    realtime request's budget (the period less the margin), drawn beside the latency.
    """

    def __init__(
        self,
        target: str,
        *,
        task: str = "",
        render_frames: FrameRenderer | None = None,
        frames_every: int = 0,
        state_names: Sequence[str] | None = None,
        budget_s: float | None = None,
        queue_size: int = 10_000,
        poll_s: float = 0.01,
    ) -> None:
        check_target(target)
        if not target:
            raise ConfigError("a view needs a target (FILE.rrd, live, rerun+http://...)")
        try:
            import rerun as rr
        except ImportError as exc:
            raise ConfigError(f"--viz needs rerun: pip install 'mtm-robot[viz]' ({exc})") from None
        self.rr = rr
        self.target = target
        self.render_frames = render_frames
        self.frames_every = frames_every
        self.budget_s = budget_s
        self.poll_s = poll_s
        self.dropped_ticks = 0
        self.logged_ticks = 0
        self._pending: deque[tuple[int, int, TickRecord]] = deque()
        self._queue_size = queue_size
        self._episode = -1
        self._episode_start_tick = 0
        self._tick = 0  # the session's tick count
        self._t0_s: float | None = None
        self._last_level = ""
        self._stop = threading.Event()
        self.rec = rr.RecordingStream("mtm-robot", recording_id=f"sim-control-{time.time_ns()}")
        if target == LIVE:
            _check_display()
            self.rec.spawn()
        elif target.endswith(".rrd"):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            self.rec.save(target)
        else:
            self.rec.connect_grpc(target)
        self.rec.log("events", rr.TextLog(f"session: {task}"), static=True)
        self._log_series_names(state_names)
        self._thread = threading.Thread(target=self._drain, name="rerun-view", daemon=True)
        self._thread.start()

    # -- TickObserver: what the control thread calls ------------------------------------

    def on_episode_start(self, seed: int) -> None:
        self._episode += 1
        self._episode_start_tick = self._tick
        self._pending.append((-1, seed, _EPISODE_START))

    def on_tick(self, step: int, tick: TickRecord) -> None:
        """The control thread's whole cost: one append (a full deque drops the tick)."""
        if len(self._pending) >= self._queue_size:
            self.dropped_ticks += 1
        else:
            self._pending.append((self._tick, self._episode, tick))
        self._tick += 1

    def on_episode_end(self, result: EpisodeResult) -> None:
        """Between episodes: a line in ``events`` and the episode's camera frames."""
        line = (
            f"episode {self._episode} (seed {result.seed}) ended after {result.ticks} ticks: "
            f"return {result.episode_return:.1f}{', ' + result.ended_by if result.ended_by else ''}"
        )
        self._wait_drained()
        self._text(self._tick - 1, result.telemetry.t_s[-1] if result.ticks else 0.0, line)
        if self.render_frames is not None and self.frames_every and result.physics is not None:
            self._log_frames(result)

    # -- the view's own thread -----------------------------------------------------------

    def _drain(self) -> None:
        while not (self._stop.is_set() and not self._pending):
            if not self._pending:
                time.sleep(self.poll_s)
                continue
            tick_index, episode, tick = self._pending.popleft()
            try:
                if tick is _EPISODE_START:
                    self._last_level = ""
                else:
                    self._log_tick(tick_index, episode, tick)
            except Exception:  # a viewer that went away must not stop the session
                log.exception("rerun view: logging tick %d failed; the view stops", tick_index)
                self._pending.clear()
                return

    def _log_tick(self, tick_index: int, episode: int, tick: TickRecord) -> None:
        rr, rec = self.rr, self.rec
        if self._t0_s is None:
            self._t0_s = tick.t_s
        rec.set_time("tick", sequence=tick_index)
        rec.set_time("time", duration=tick.t_s - self._t0_s)
        rec.log("state/observed", rr.Scalars(tick.state))
        for path, values in (("state/predicted", tick.predicted), ("state/target", tick.target)):
            if np.all(np.isfinite(values)):
                rec.log(path, rr.Scalars(values))
        rec.log("action/requested", rr.Scalars(tick.requested))
        rec.log("action/applied", rr.Scalars(tick.applied))
        if np.isfinite(tick.latency_s):
            rec.log("timing/latency_ms", rr.Scalars(tick.latency_s * 1e3))
        if self.budget_s is not None:  # this tick's: what lateness left of the budget
            rec.log("timing/budget_ms", rr.Scalars((self.budget_s - tick.lateness_s) * 1e3))
        rec.log("timing/period_ms", rr.Scalars(tick.period_s * 1e3))
        rec.log("fallback/level", rr.Scalars(LEVELS.index(tick.level)))
        rec.log("fallback/miss", rr.Scalars(float(tick.level != MODEL_LEVEL)))
        if np.isfinite(tick.surprise):
            rec.log("surprise", rr.Scalars(tick.surprise))
        if np.isfinite(tick.reward):
            rec.log("reward", rr.Scalars(tick.reward))
        rec.log("node/down", rr.Scalars(float(tick.node_down)))
        rec.log("episode", rr.Scalars(episode))
        if tick.level != self._last_level:
            level = rr.TextLogLevel.INFO if tick.level == MODEL_LEVEL else rr.TextLogLevel.WARN
            rec.log("events", rr.TextLog(f"fallback level: {tick.level}", level=level))
            self._last_level = tick.level
        self.logged_ticks += 1

    def _log_series_names(self, state_names: Sequence[str] | None) -> None:
        rr, rec = self.rr, self.rec
        if state_names:
            for path in ("state/observed", "state/predicted", "state/target"):
                rec.log(path, rr.SeriesLines(names=list(state_names)), static=True)
        levels = ", ".join(f"{i} {name}" for i, name in enumerate(LEVELS))
        rec.log("fallback/level", rr.SeriesLines(names=[f"level ({levels})"]), static=True)

    def _text(self, tick_index: int, t_s: float, line: str) -> None:
        self.rec.set_time("tick", sequence=max(tick_index, 0))
        self.rec.set_time("time", duration=t_s - (self._t0_s or t_s))
        self.rec.log("events", self.rr.TextLog(line))

    def _log_frames(self, result: EpisodeResult) -> None:
        """The episode's frames, every ``frames_every``-th tick, at those ticks' times."""
        assert self.render_frames is not None and result.physics is not None
        t_s = result.telemetry.t_s
        start = time.perf_counter()
        count = 0
        frames = self.render_frames(result.physics, self.frames_every)
        for k, frame in zip(range(0, result.ticks, self.frames_every), frames):
            self.rec.set_time("tick", sequence=self._episode_start_tick + k)
            self.rec.set_time("time", duration=t_s[k] - (self._t0_s or t_s[0]))
            self.rec.log("camera", self.rr.Image(frame).compress(jpeg_quality=85))
            count += 1
        log.info("rerun view: %d frames in %.1f s", count, time.perf_counter() - start)

    def _wait_drained(self, timeout_s: float = 30.0) -> None:
        give_up = time.perf_counter() + timeout_s
        while self._pending and self._thread.is_alive() and time.perf_counter() < give_up:
            time.sleep(self.poll_s)

    def close(self, flush_timeout_s: float = 10.0) -> None:
        """Log what is queued, then close the recording (an ``.rrd`` is complete after this).

        A viewer that cannot be reached (closed, or never started) costs a warning, not the run.
        """
        self._stop.set()
        self._thread.join(timeout=60.0)
        if self.dropped_ticks:
            log.warning("rerun view dropped %d ticks (its queue was full)", self.dropped_ticks)
        try:
            self.rec.flush(timeout_sec=flush_timeout_s)
        except RuntimeError as exc:  # rerun's error for a viewer it cannot reach
            log.warning("rerun view: %s could not take the recording: %s", self.target, exc)
        self.rec.disconnect()


_EPISODE_START: Any = object()  # marks an episode's start in the queue
