"""The session as a library: it logs and hands each episode to the caller, never prints.

The node is replaced by an in-process fake (``open_node`` and ``NodeClient`` patched), so the
session's own code runs without a node process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import controllers.session as session_module
from controllers.loop import ControllerConfig
from controllers.session import EpisodeDone, SessionConfig, _check_before_loop, run_session
from mtm_robot.checkpoint_meta import (
    SHIPPED_CHECKPOINTS,
    read_metadata,
    resolve_checkpoint_path,
    shipped_tasks,
)
from mtm_robot.errors import SpecMismatchError

from .plant import N, PointMassPlant

METADATA = {
    "model_id": "fake@1",
    "modalities": {"states": 4 * N, "actions": N},
    "modes": ["return_conditioned"],
    "return_stats": {"return_min": 0.0, "return_max": 1.0},
}


@dataclass
class _Reply:
    action: np.ndarray
    action_chunk: np.ndarray
    next_states: np.ndarray = field(default_factory=lambda: np.zeros((0, 4 * N)))
    model_id: str = "fake@1"
    ok: bool = True


class _FakeClient:
    """Answers every request at once with a small constant force."""

    def __init__(self, endpoint: str, timeout_ms: float = 0.0) -> None:
        self.requests = 0

    def __enter__(self) -> _FakeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def wait_ready(self, timeout_s: float = 0.0) -> None:
        pass

    def submit(self, mode: str, state: np.ndarray, **fields: Any) -> int:
        self.requests += 1
        return self.requests

    def poll(self, request_id: int, timeout_ms: float = 0.0) -> _Reply:
        action = np.full(N, 0.1)
        return _Reply(action, action[None])

    def abandon(self, request_id: int) -> None:
        pass


@pytest.fixture
def fake_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        session_module, "open_node", lambda *args: ("tcp://fake", dict(METADATA), None)
    )
    monkeypatch.setattr(session_module, "NodeClient", _FakeClient)


def test_a_session_logs_progress_and_hands_episodes_to_the_caller_without_printing(
    fake_node: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = SessionConfig(
        task="pointmass-reach",
        episodes=2,
        seed=7,
        controller=ControllerConfig(realtime=False, max_steps=5),
    )
    seen: list[EpisodeDone] = []
    with caplog.at_level(logging.INFO, logger="controllers.session"):
        result = run_session(
            config, tmp_path / "run", progress=True, robot=PointMassPlant(), on_episode=seen.append
        )

    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""  # library code does not print
    assert [d.index for d in seen] == [0, 1] and all(d.episodes == 2 for d in seen)
    assert [d.result for d in seen] == result.episodes
    assert [d.summary for d in seen] == result.summaries
    assert [d.result.seed for d in seen] == [7, 8]
    lines = [r.getMessage() for r in caplog.records if r.name == "controllers.session"]
    assert lines == [d.line() for d in seen]
    assert lines[0].startswith("episode 1/2: return ") and lines[0].endswith(", 0 misses")


def test_without_progress_a_session_logs_no_episode_lines(
    fake_node: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = SessionConfig(
        task="pointmass-reach", episodes=1, controller=ControllerConfig(realtime=False, max_steps=3)
    )
    with caplog.at_level(logging.INFO, logger="controllers.session"):
        result = run_session(config, tmp_path / "run", progress=False, robot=PointMassPlant())
    assert [s["ticks"] for s in result.summaries] == [3]
    assert not [r for r in caplog.records if r.name == "controllers.session"]


@pytest.mark.parametrize(
    ("task", "served"),
    [("walker-walk", str(SHIPPED_CHECKPOINTS / "walker-walk")), ("pointmass-reach", "default")],
)
def test_the_default_checkpoint_is_the_model_shipped_for_the_task(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, task: str, served: str
) -> None:
    """``--checkpoint default`` serves the task's shipped model; a task without one keeps the
    walker model (the model-fit check then names the mismatch)."""
    asked: list[str] = []

    def open_node(server: str, checkpoint: str, *args: Any) -> tuple[str, dict[str, Any], None]:
        asked.append(checkpoint)
        return "tcp://fake", dict(METADATA), None

    monkeypatch.setattr(session_module, "open_node", open_node)
    monkeypatch.setattr(session_module, "NodeClient", _FakeClient)
    plant = PointMassPlant()
    plant.task = task
    config = SessionConfig(
        task=task, episodes=1, controller=ControllerConfig(realtime=False, max_steps=2)
    )
    run_session(config, tmp_path / "run", robot=plant)
    assert asked == [served]


def test_a_task_without_a_shipped_model_names_the_commands_that_make_one() -> None:
    """``--checkpoint default`` on a task no model ships for: the dims check says what to run."""
    from sim import registry

    assert "hopper-hop" not in shipped_tasks()
    meta = dict(read_metadata(resolve_checkpoint_path("default", "walker-walk")))
    meta.setdefault("modalities", {"states": 24, "actions": 6, "returns": 1})
    meta.setdefault("modes", ["return_conditioned"])
    with registry.make("hopper-hop") as env:
        with pytest.raises(SpecMismatchError) as excinfo:
            _check_before_loop(SessionConfig(task="hopper-hop"), env, meta, None)
        message = str(excinfo.value)
        assert "no model ships for 'hopper-hop'" in message
        assert "mtm-train-expert --task hopper-hop" in message and "mtm-collect" in message
        with pytest.raises(SpecMismatchError) as excinfo:  # a checkpoint the user chose: as is
            _check_before_loop(SessionConfig(task="hopper-hop", checkpoint="x"), env, meta, None)
        assert "no model ships" not in str(excinfo.value)
