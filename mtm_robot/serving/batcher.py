"""The dynamic batcher: one inference thread turning queued requests into batched forwards.

The receive loop only enqueues :class:`Job` s (never waits on inference). The inference
thread takes the oldest job, then gathers more for at most ``max_wait_us`` after that job was
queued, up to ``max_batch``; jobs whose deadline has passed get an ``expired`` outcome without
running; the rest run as one :meth:`Predictor.predict_batch` (which mixes modes and context
lengths in one fixed-shape forward). Outcomes go to a ``deliver`` callback on that thread.

:meth:`Batcher.run_inline` lets the receive loop run a lone job itself when the inference
thread is idle and nothing is queued (no hand-off between threads for a single client); one
lock keeps the two from ever running the engine at the same time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mtm_robot.errors import MTMRobotError
from mtm_robot.inference import Context, Prediction
from mtm_robot.serving.backends import Engine, non_finite_output
from mtm_robot.serving.stats import ServingStats
from mtm_robot_client import protocol as wire

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One queued ``act`` request."""

    context: Context
    request_id: int | str
    envelope: list[bytes]
    received: float  # time.monotonic() at receipt
    queued: float  # time.monotonic() when enqueued
    deadline: float | None = None  # time.monotonic() after which it must not run


@dataclass
class Outcome:
    """What happened to a job: a prediction, or an error code and message."""

    prediction: Prediction | None = None
    model_id: str = ""
    code: str = ""
    message: str = ""
    timings_us: dict[str, float] = field(default_factory=dict)


Deliver = Callable[[Job, Outcome], None]
_STOP: Any = object()


class Batcher:
    """Owns the inference thread. ``engine()`` is read once per batch (hot reload)."""

    def __init__(
        self,
        engine: Callable[[], Engine],
        deliver: Deliver,
        stats: ServingStats,
        max_batch: int = 32,
        max_wait_us: int = 0,
        max_queue: int = 4096,
        before_start: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._deliver = deliver
        self._stats = stats
        self.max_batch = max_batch
        self.max_wait_s = max_wait_us * 1e-6
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._before_start = before_start
        self._running = threading.Lock()  # held while a batch runs, on either thread
        self._thread = threading.Thread(target=self._run, name="mtm-inference", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Job) -> bool:
        """Enqueue without blocking; False when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            return False
        return True

    def run_inline(self, job: Job, deliver: Deliver) -> bool:
        """Run ``job`` now on the calling thread, as a batch of one, if the inference thread is
        idle and nothing is queued; False (nothing done) otherwise: then submit it."""
        if not self._queue.empty() or not self._running.acquire(blocking=False):
            return False
        try:
            self._run_batch([job], deliver)
        finally:
            self._running.release()
        return True

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish every job queued so far, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout_s)

    # -- inference thread ---------------------------------------------------------------------
    def _run(self) -> None:
        if self._before_start is not None:
            self._before_start()
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch, stop = [first], False
            wait_until = first.queued + self.max_wait_s
            while len(batch) < self.max_batch:
                remaining = wait_until - time.monotonic()
                try:
                    item = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            with self._running:
                self._run_batch(batch, self._deliver)
            if stop:
                return

    def _run_batch(self, batch: list[Job], deliver: Deliver) -> None:
        start = time.monotonic()
        live = []
        for job in batch:
            if job.deadline is not None and start > job.deadline:
                late_ms = (start - job.deadline) * 1e3
                message = f"deadline passed {late_ms:.3f} ms before it ran"
                self._finish(job, Outcome(code=wire.EXPIRED, message=message), deliver)
            else:
                live.append(job)
        if not live:
            return
        engine = self._engine()
        outcomes = self._predict(engine, live)
        elapsed = time.monotonic() - start
        self._stats.record("inference", elapsed)
        self._stats.record_batch(len(live))
        for job, outcome in zip(live, outcomes):
            outcome.model_id = engine.model_id
            outcome.timings_us.update(
                queue=round((start - job.queued) * 1e6, 1),
                inference=round(elapsed * 1e6, 1),
                batch=len(live),
            )
            self._stats.record("queue", start - job.queued)
            self._finish(job, outcome, deliver)

    def _predict(self, engine: Engine, jobs: list[Job]) -> list[Outcome]:
        try:
            predictions = engine.predictor.predict_batch([j.context for j in jobs])
            return [self._checked(p) for p in predictions]
        except MTMRobotError as exc:  # a context the checks let through: isolate it
            if len(jobs) > 1:
                return [self._predict(engine, [job])[0] for job in jobs]
            return [Outcome(code=wire.BAD_REQUEST, message=str(exc))]
        except Exception as exc:  # the node's fault: answer, log, keep serving
            log.exception("inference failed for a batch of %d", len(jobs))
            message = f"{type(exc).__name__}: {exc}"
            return [Outcome(code=wire.INTERNAL, message=message) for _ in jobs]

    @staticmethod
    def _checked(prediction: Prediction) -> Outcome:
        bad = non_finite_output(prediction)
        if bad is None:
            return Outcome(prediction=prediction)
        message = f"the model's {bad} is not finite (inputs far outside its training data?)"
        log.warning("refusing a reply: %s", message)
        return Outcome(code=wire.NOT_FINITE, message=message)

    def _finish(self, job: Job, outcome: Outcome, deliver: Deliver) -> None:
        try:
            deliver(job, outcome)
        except Exception as exc:  # still answer: a client waiting on this id must not hang
            log.exception("delivering the reply to request %r failed", job.request_id)
            if outcome.prediction is None and outcome.code == wire.INTERNAL:
                return
            failed = Outcome(
                model_id=outcome.model_id, code=wire.INTERNAL, message=type(exc).__name__
            )
            try:
                deliver(job, failed)
            except Exception:
                log.exception("the internal-error reply to request %r failed too", job.request_id)
