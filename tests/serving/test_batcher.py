from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np

from mtm_robot.errors import SpecMismatchError
from mtm_robot.inference import Context, Prediction
from mtm_robot.serving.batcher import Batcher, Job, Outcome
from mtm_robot.serving.stats import ServingStats
from mtm_robot_client import protocol as wire

from .conftest import wait_for


class FakePredictor:
    """Refuses ``goal`` contexts (like a context the node's checks let through) and raises
    a RuntimeError for ``crash``; otherwise echoes the state's first value as the action."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def predict_batch(self, contexts: list[Context]) -> list[Prediction]:
        modes = [c.mode for c in contexts]
        self.batches.append(modes)
        if "crash" in modes:
            raise RuntimeError("kernel exploded")
        if "goal" in modes:
            raise SpecMismatchError("goal needs segment_length >= 2")
        return [Prediction(c.state[:1], c.state[None, :1], np.zeros((0, 1)), 0) for c in contexts]


def _batcher(max_batch: int = 8, max_wait_us: int = 0):
    predictor = FakePredictor()
    engine = SimpleNamespace(predictor=predictor, model_id="fake")
    outcomes: dict[int | str, Outcome] = {}
    gate = threading.Event()
    batcher = Batcher(
        lambda: engine,  # type: ignore[arg-type, return-value]
        lambda job, outcome: outcomes.__setitem__(job.request_id, outcome),
        ServingStats(),
        max_batch=max_batch,
        max_wait_us=max_wait_us,
        before_start=lambda: gate.wait(10),
    )
    batcher.start()
    return batcher, predictor, outcomes, gate


def _job(i: int, mode: str = "behavior_cloning", deadline_s: float | None = None) -> Job:
    now = time.monotonic()
    ctx = Context(mode=mode, state=np.array([float(i)], np.float32))
    deadline = None if deadline_s is None else now + deadline_s
    return Job(ctx, i, [b"peer"], now, now, deadline)


def test_one_bad_context_does_not_fail_its_batch():
    batcher, predictor, outcomes, gate = _batcher()
    for i, mode in enumerate(["behavior_cloning", "goal", "behavior_cloning"]):
        assert batcher.submit(_job(i, mode))
    gate.set()  # the thread starts now: all three queued -> one batch
    assert wait_for(lambda: len(outcomes) == 3)
    assert predictor.batches[0] == ["behavior_cloning", "goal", "behavior_cloning"]
    assert outcomes[1].code == wire.BAD_REQUEST and "segment_length" in outcomes[1].message
    assert outcomes[0].prediction is not None and outcomes[0].prediction.action[0] == 0.0
    assert outcomes[2].prediction is not None and outcomes[2].prediction.action[0] == 2.0
    assert outcomes[0].model_id == "fake" and outcomes[0].timings_us["batch"] == 3
    batcher.stop()


def test_a_crashing_forward_answers_internal_and_the_thread_keeps_going():
    batcher, _, outcomes, gate = _batcher()
    batcher.submit(_job(0, "crash"))
    gate.set()
    assert wait_for(lambda: 0 in outcomes)
    assert outcomes[0].code == wire.INTERNAL and "kernel exploded" in outcomes[0].message
    batcher.submit(_job(1))
    assert wait_for(lambda: 1 in outcomes) and outcomes[1].prediction is not None
    batcher.stop()


def test_batches_respect_max_batch_and_skip_expired_jobs():
    batcher, predictor, outcomes, gate = _batcher(max_batch=4)
    for i in range(10):
        batcher.submit(_job(i, deadline_s=-1.0 if i == 5 else None))
    gate.set()
    assert wait_for(lambda: len(outcomes) == 10)
    assert [len(b) for b in predictor.batches] == [4, 3, 2]  # job 5 expired in the 2nd batch
    assert outcomes[5].code == wire.EXPIRED and outcomes[5].prediction is None
    batcher.stop()


def test_stop_finishes_every_queued_job():
    batcher, _, outcomes, gate = _batcher(max_batch=2)
    for i in range(7):
        batcher.submit(_job(i))
    gate.set()
    batcher.stop()
    assert sorted(outcomes) == list(range(7))
