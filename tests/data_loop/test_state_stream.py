"""The state-stream codec and the event -> episode logic, without sockets."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from mtm_robot.serving.state_stream import (
    StateStep,
    StreamEnd,
    StreamFault,
    StreamRecording,
    encode_end,
    encode_state,
    parse,
)
from mtm_robot_client import protocol

DIM = 3


class ListSink:
    """Records what the recording asks of a recorder."""

    def __init__(self) -> None:
        self.episodes: list[dict[str, Any]] = []

    def begin(self, meta: dict[str, Any]) -> str:
        self.episodes.append({"meta": dict(meta), "states": [], "rewards": [], "end": None})
        return f"episode_{len(self.episodes) - 1}"

    def record(self, state, action, reward, physics, t_s, **telemetry) -> bool:  # type: ignore[no-untyped-def]
        assert action is None  # demonstrations never carry actions
        self.episodes[-1]["states"].append(np.asarray(state))
        self.episodes[-1]["rewards"].append(reward)
        return True

    def end(self, **meta: Any) -> None:
        self.episodes[-1]["end"] = meta


def _state(value: float, dim: int = DIM) -> np.ndarray:
    return np.full(dim, value, dtype=np.float32)


def test_parse_accepts_states_and_ends():
    step = parse(encode_state("ep", 4, _state(1.5), reward=0.25, t_s=0.1), DIM)
    assert isinstance(step, StateStep)
    assert (step.episode, step.step, step.reward, step.t_s) == ("ep", 4, 0.25, 0.1)
    np.testing.assert_array_equal(step.state, _state(1.5))
    end = parse(encode_end(7, terminated=True, reason="fell"), DIM)
    assert end == StreamEnd("7", terminated=True, truncated=False, reason="fell")
    row = parse(encode_state("ep", 0, _state(2.0).reshape(1, DIM)), DIM)
    assert isinstance(row, StateStep) and row.state.shape == (DIM,)
    assert row.reward is None


@pytest.mark.parametrize(
    ("frames", "code", "episode"),
    [
        (encode_state("ep", 0, _state(1.0, DIM + 1)), protocol.BAD_SHAPE, "ep"),
        (encode_state("ep", 0, np.array([1.0, np.nan, 0.0])), protocol.NOT_FINITE, "ep"),
        ([b"{not json"], protocol.BAD_MESSAGE, None),
        (encode_state("ep", -1, _state(0.0)), protocol.BAD_MESSAGE, "ep"),
        (protocol.encode({"type": "state", "step": 0}, {"state": _state(0)}), protocol.BAD_MESSAGE,
         None),
        (protocol.encode({"type": "pose", "episode": "ep"}), protocol.UNKNOWN_TYPE, "ep"),
        (protocol.encode({"type": "state", "episode": "ep", "step": 0}), protocol.BAD_MESSAGE,
         "ep"),
    ],
)  # fmt: skip
def test_parse_turns_every_bad_message_into_a_fault(frames, code, episode):
    fault = parse(frames, DIM)
    assert isinstance(fault, StreamFault)
    assert (fault.code, fault.episode) == (code, episode)


def test_parse_refuses_integer_arrays_and_nan_rewards():
    header = {"v": 1, "type": "state", "episode": "e", "step": 0,
              "arrays": [{"name": "state", "dtype": "int32", "shape": [DIM]}]}  # fmt: skip
    fault = parse([json.dumps(header).encode(), np.zeros(DIM, "<i4").tobytes()], DIM)
    assert isinstance(fault, StreamFault) and fault.code == protocol.BAD_DTYPE
    assert fault.episode == "e"  # readable: the open episode "e" gets closed
    header = {"v": 2, "type": "state", "episode": "e", "step": 0}
    fault = parse([json.dumps(header).encode()], DIM)
    assert isinstance(fault, StreamFault)
    assert (fault.code, fault.episode) == (protocol.BAD_VERSION, "e")
    frames = encode_state("e", 0, _state(0.0))
    head = json.loads(frames[0])
    head["reward"] = 1e400  # overflows to inf in the parser
    fault = parse([json.dumps(head).replace("Infinity", "1e400").encode(), frames[1]], DIM)
    assert isinstance(fault, StreamFault) and fault.code == protocol.NOT_FINITE


def _steps(recording: StreamRecording, episode: str, start: int, n: int, reward: bool = True):  # type: ignore[no-untyped-def]
    for t in range(start, start + n):
        recording.apply(StateStep(episode, t, _state(t), 1.0 if reward else None))


def test_each_fault_closes_the_open_episode_with_its_reason():
    sink = ListSink()
    rec = StreamRecording(sink, meta={"task": "toy"}, clock=lambda: 0.0)
    _steps(rec, "a", 0, 5)
    rec.apply(StreamEnd("a", truncated=True))
    _steps(rec, "b", 0, 3)
    rec.apply(StreamFault(protocol.BAD_SHAPE, "state: expected [3], got [4]", "b"))
    _steps(rec, "b", 3, 2)  # the rest of a faulty episode is discarded
    _steps(rec, "c", 0, 2)
    _steps(rec, "c", 3, 1)  # step 2 never came
    _steps(rec, "d", 0, 1)
    _steps(rec, "e", 0, 2)  # d never sent its end message
    rec.apply(StreamFault(protocol.NOT_FINITE, "NaN", "e"))
    _steps(rec, "f", 5, 3)  # joined mid-episode: skipped
    _steps(rec, "g", 0, 4)
    rec.timeout(1.5)
    reasons = [(e["meta"]["stream_episode"], len(e["states"]), e["end"]["reason"])
               for e in sink.episodes]  # fmt: skip
    assert reasons == [
        ("a", 5, "end"),
        ("b", 3, protocol.BAD_SHAPE),
        ("c", 2, "step_gap"),
        ("d", 1, "new_episode"),
        ("e", 2, protocol.NOT_FINITE),
        ("g", 4, "timeout"),
    ]
    assert sink.episodes[0]["end"]["truncated"] is True
    assert sink.episodes[0]["end"]["ended_cleanly"] is True
    assert sink.episodes[0]["end"]["return"] == 5.0
    assert sink.episodes[1]["end"]["ended_cleanly"] is False
    assert "expected [3]" in sink.episodes[1]["end"]["reason_detail"]
    assert sink.episodes[0]["meta"]["task"] == "toy"
    np.testing.assert_array_equal(np.stack(sink.episodes[5]["states"])[:, 0], np.arange(4))
    assert rec.discarded == 2 + 3  # b's tail and f
    assert [s.reason for s in rec.summaries] == [r for _, _, r in reasons]


def test_missing_rewards_are_marked_unknown_not_zero():
    sink = ListSink()
    rec = StreamRecording(sink, clock=lambda: 0.0)
    _steps(rec, "a", 0, 3, reward=False)
    rec.close("interrupted")
    end = sink.episodes[0]["end"]
    assert end["rewards_known"] is False
    assert "return" not in end
    assert all(np.isnan(r) for r in sink.episodes[0]["rewards"])
    assert rec.summaries[0].return_ is None
