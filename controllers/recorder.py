"""The recorder: episodes written by a background thread, never by the control tick.

The tick calls :meth:`EpisodeRecorder.record`, which only appends a small record to a bounded
deque (no lock wait, no thread wake-up; if the deque is full the step is dropped and counted,
never waited for); the writer thread polls it. The writer thread
flushes the steps gathered every ``flush_interval_s`` as a chunk file
(``episode_000007.part_0003.npz``) through the crash-safe episode store, and when the episode
ends merges the chunks into ``episode_000007.npz``. A crash loses at most one flush interval:
:func:`recover_partial` merges the chunks of an episode that never ended into an episode file
marked ``complete: false``.

A write that fails (a full disk: ENOSPC, or any other OSError) stops the recorder: it writes
nothing more, leaves every complete episode and the chunks of the open one as they are (the
open one up to its last good flush, merged by :func:`recover_partial` when a recorder next opens
the folder), leaves no temporary file, and says why in :attr:`EpisodeRecorder.error` and the
log. Sessions and launchers report that error and exit non-zero.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtm_robot.config import at_least, positive
from mtm_robot.data.episodes import Episode, episode_file, episode_paths, load_episode, save_episode
from mtm_robot.errors import DataError

log = logging.getLogger(__name__)
_PART = re.compile(r"^episode_(\d+)\.part_(\d+)\.npz$")


@dataclass
class RecorderConfig:
    flush_interval_s: float = 1.0
    queue_size: int = 10_000  # steps buffered between the tick and the writer
    poll_s: float = 0.02  # how often the writer drains the buffer

    def __post_init__(self) -> None:
        positive(flush_interval_s=self.flush_interval_s, poll_s=self.poll_s)
        at_least(1, queue_size=self.queue_size)


@dataclass
class _Step:
    state: np.ndarray
    action: np.ndarray | None
    reward: float | None
    physics: np.ndarray | None
    t_s: float
    telemetry: dict[str, Any]


def _part_file(directory: Path, index: int, part: int) -> Path:
    return directory / f"episode_{index:06d}.part_{part:04d}.npz"


def _parts(directory: Path) -> dict[int, list[Path]]:
    found: dict[int, list[tuple[int, Path]]] = {}
    for path in directory.glob("episode_*.part_*.npz"):
        match = _PART.match(path.name)
        if match:
            found.setdefault(int(match.group(1)), []).append((int(match.group(2)), path))
    return {i: [p for _, p in sorted(v)] for i, v in found.items()}


def _merge(chunks: list[Episode], meta: dict[str, Any]) -> Episode:
    def cat(name: str) -> np.ndarray | None:
        values = [getattr(c, name) for c in chunks]
        return None if any(v is None for v in values) else np.concatenate(values)

    telemetry = {
        k: np.concatenate([c.telemetry[k] for c in chunks])
        for k in chunks[0].telemetry
        if all(k in c.telemetry for c in chunks)
    }
    states = np.concatenate([c.states for c in chunks])
    return Episode(
        states, cat("actions"), cat("rewards"), cat("physics"), cat("time_s"), meta, telemetry
    )


def recover_partial(directory: str | Path) -> list[Path]:
    """Merge the chunks of episodes that never ended (a crash) into episode files."""
    directory = Path(directory)
    recovered: list[Path] = []
    if not directory.is_dir():
        return recovered
    for index, parts in sorted(_parts(directory).items()):
        final = episode_file(directory, index)
        if not final.exists():
            chunks = [load_episode(p) for p in parts]
            meta = dict(
                chunks[0].meta.get("episode_meta", {}),
                complete=False,
                recovered=True,
                reason="recorder stopped before the episode ended",
            )
            save_episode(final, _merge(chunks, meta))
            recovered.append(final)
        for p in parts:
            p.unlink(missing_ok=True)
    return recovered


class EpisodeRecorder:
    """Records episodes into an episode-store directory from a background thread."""

    def __init__(self, directory: str | Path, config: RecorderConfig | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config = config or RecorderConfig()
        try:
            recovered = recover_partial(self.directory)
        except OSError as exc:  # a full disk: the chunks stay as they are
            raise DataError(
                f"cannot merge the partial episodes left in {self.directory} "
                f"({exc.strerror or exc}); free space there and start again"
            ) from exc
        for path in recovered:
            log.warning("recovered a partial episode: %s", path)
        self._queue: deque[tuple[str, Any]] = deque()
        existing = episode_paths(self.directory)
        self._next_index = int(existing[-1].name[8:14]) + 1 if existing else 0
        self.dropped_steps = 0  # steps lost to a full queue (reported, never hidden)
        self.flushes = 0
        self.episodes_written = 0
        self.write_s: list[float] = []
        self.errors: list[str] = []
        self.error = ""  # the write error that stopped the recorder ("" while it writes)
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    # -- called from the control loop (never blocks) ---------------------------------------
    def begin(self, meta: dict[str, Any]) -> Path:
        index = self._next_index
        self._next_index += 1
        self._put(("begin", (index, dict(meta))), control=True)
        return episode_file(self.directory, index)

    def record(
        self,
        state: np.ndarray,
        action: np.ndarray | None,
        reward: float | None,
        physics: np.ndarray | None,
        t_s: float,
        **telemetry: Any,
    ) -> bool:
        """Queue one step; False (and counted) if the queue is full.

        The arrays are kept by reference (conversion happens on the writer thread): pass arrays
        that are not modified afterwards, as the controller does.
        """
        if self.error:  # stopped by a write error: nothing more is written
            return False
        if len(self._queue) >= self.config.queue_size:
            self.dropped_steps += 1
            return False
        self._queue.append(("step", _Step(state, action, reward, physics, t_s, telemetry)))
        return True

    def end(self, **meta: Any) -> None:
        """Close the current episode (``terminated``, ``truncated``, ``reason``, ...)."""
        self._put(("end", meta), control=True)

    def _put(self, item: tuple[str, Any], control: bool) -> bool:
        # deque.append is atomic under the GIL: the tick never waits for the writer
        if not control and len(self._queue) >= self.config.queue_size:
            self.dropped_steps += 1
            return False
        self._queue.append(item)
        return True

    def close(self, timeout_s: float = 30.0) -> None:
        """Write everything queued and stop the writer."""
        self._queue.append(("stop", None))
        self._thread.join(timeout_s)

    def __enter__(self) -> EpisodeRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        index: int | None = None
        meta: dict[str, Any] = {}
        pending: list[_Step] = []
        part = 0
        last_flush = time.monotonic()

        def flush() -> None:
            nonlocal pending, part, last_flush
            last_flush = time.monotonic()
            if index is None or not pending:
                return
            start = time.perf_counter()
            chunk = self._chunk(pending, {"episode_meta": meta, "part": part})
            save_episode(_part_file(self.directory, index, part), chunk)
            self.write_s.append(time.perf_counter() - start)
            self.flushes += 1
            pending, part = [], part + 1

        while True:
            kind = ""
            try:
                if not self._queue:
                    time.sleep(self.config.poll_s)
                    if time.monotonic() - last_flush >= self.config.flush_interval_s:
                        flush()
                    continue
                kind, payload = self._queue.popleft()
                if self.error:  # stopped: drain the queue, write nothing
                    if kind == "stop":
                        return
                    continue
                if kind == "begin":
                    index, meta, pending, part = payload[0], payload[1], [], 0
                elif kind == "step":
                    if index is not None:
                        pending.append(payload)
                elif kind in ("end", "stop"):
                    flush()
                    if index is not None:
                        closing = {**meta, **(payload or {}), "complete": kind == "end"}
                        self._finish(index, closing)
                    index = None
                    if kind == "stop":
                        return
                if time.monotonic() - last_flush >= self.config.flush_interval_s:
                    flush()
            except OSError as exc:  # a full disk: stop writing, keep what is on disk
                self._stop_writing(exc, index)
                pending = []
            except Exception as exc:  # bad data: report, never let the writer die
                self.errors.append(f"{type(exc).__name__}: {exc}")
                log.error("recorder could not write: %s", exc)
            if kind == "stop":  # closing failed: what is on disk stays as it is
                return

    def _stop_writing(self, exc: OSError, index: int | None) -> None:
        parts = _parts(self.directory).get(index, []) if index is not None else []
        kept = (
            f"; episode {index} kept up to its last flush in {len(parts)} chunk file(s), merged "
            f"(complete: false) when a recorder next opens the folder"
            if parts
            else ""
        )
        self.error = (
            f"writing episodes to {self.directory} failed: {exc.strerror or exc}; "
            f"the recorder stopped with {self.episodes_written} complete episodes written{kept}"
        )
        self.errors.append(self.error)
        log.error("%s", self.error)

    @staticmethod
    def _chunk(steps: list[_Step], meta: dict[str, Any]) -> Episode:
        def stacked(values: list[Any]) -> np.ndarray | None:
            present = [np.asarray(v, dtype=np.float64) for v in values if v is not None]
            return np.stack(present) if len(present) == len(values) else None

        telemetry = {k: np.asarray([s.telemetry[k] for s in steps]) for k in steps[0].telemetry}
        return Episode(
            np.stack([np.asarray(s.state, dtype=np.float32) for s in steps]),
            stacked([s.action for s in steps]),
            stacked([s.reward for s in steps]),  # no rewards array if any step lacks one
            stacked([s.physics for s in steps]),
            np.array([s.t_s for s in steps]),
            meta,
            telemetry,
        )

    def _finish(self, index: int, meta: dict[str, Any]) -> None:
        parts = _parts(self.directory).get(index, [])
        if not parts:
            return
        episode = _merge([load_episode(p) for p in parts], meta)
        save_episode(episode_file(self.directory, index), episode)
        for p in parts:
            p.unlink(missing_ok=True)
        self.episodes_written += 1
