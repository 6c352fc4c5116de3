"""Every inference mode through every layer, and the list of modes in one home.

The table (:mod:`mtm_robot_client.modes`) -> its masks (``masks.MODE_MASKS``) -> the
:class:`~mtm_robot.inference.Predictor` (inputs placed where the layout says, the answer read
where ``REPLY_ARRAYS`` says) -> a node through the client (request fields built from the table,
the answer in the array the table names) -> the controller loop's requests -> calibration's
requests. A mode added to the table runs through all of them or fails here; a mode list spelled
outside the table fails the scan at the end.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from calibration.latency import _request_fields
from calibration.procedures import CalibrationConfig
from controllers.loop import CONTROL_MODES, Controller, ControllerConfig
from controllers.reference import ReferenceTrajectory
from mtm_robot.data.normalize import Normalizer
from mtm_robot.errors import ConfigError
from mtm_robot.inference import Context, Predictor
from mtm_robot.model import masks as mask_lib
from mtm_robot.serving.backends import BackendConfig
from mtm_robot.serving.contexts import context_from_message
from mtm_robot.serving.server import InferenceNode, ServeConfig
from mtm_robot.training.checkpoint import load_checkpoint
from mtm_robot_client import NodeClient
from mtm_robot_client import protocol as wire
from mtm_robot_client.modes import (
    ARRAYS,
    MODES,
    REPLY_ARRAYS,
    RETURN_MODES,
    Mode,
    action_modes,
    slots,
)
from tests.serving.conftest import SPEC, make_checkpoint

ROOT = Path(__file__).resolve().parents[1]
L = SPEC.segment_length
DS, DA = SPEC.modalities["states"], SPEC.modalities["actions"]
NAMES = list(SPEC.modalities)
EVERY_MODE = tuple(MODES)


def mode_inputs(mode: Mode, rng: np.random.Generator, history: int = 2) -> dict[str, Any]:
    """Request fields for ``mode`` built from the table: a history, a target if it needs one,
    and one row (or one vector) of each of its arrays."""
    arrays = {}
    for name in mode.arrays:
        dim = SPEC.modalities[ARRAYS[name].modality]
        arrays[name] = rng.normal(1.0, 2.0, (1, dim) if ARRAYS[name].rows else dim)
    return mode.request_fields(
        history_states=rng.normal(1.0, 2.0, (history, DS)),
        history_actions=rng.normal(1.0, 2.0, (history, DA)),
        return_target=float(rng.normal(1.0, 0.5)) if mode.needs_return_target else None,
        **arrays,
    )


def history_for(mode: Mode) -> int:
    return L - 2 if mode.needs_future_slot else L - 1


# -- the table and the masks --------------------------------------------------------------------
def test_the_table_and_the_masks_name_the_same_modes():
    assert set(mask_lib.MODE_MASKS) == set(MODES)
    assert set(REPLY_ARRAYS) == {"action", "action_chunk", "next_states"}
    training = set(mask_lib.TRAINING_PATTERNS) - {"random", "random_autoregressive"}
    assert training == {name for name, mode in MODES.items() if mode.forwards == 1}


@pytest.mark.parametrize("name", EVERY_MODE)
def test_each_forward_sees_the_inputs_and_predicts_the_answer(name: str):
    """Every mask of the mode shows the slots the layout fills (history, current state, the
    mode's arrays, the return target) and hides the slots its answer is read from."""
    mode = MODES[name]
    for k in range(history_for(mode) + 1):
        rows = {n: 1 for n in mode.arrays if ARRAYS[n].rows}
        masks = mask_lib.mode_masks(name, NAMES, L, k, **rows)
        assert len(masks) == mode.forwards
        answer_modality, answer_placement = REPLY_ARRAYS[mode.answer]
        answer_slot = slots(answer_placement, L, k).start  # its first row: the answer now
        if answer_slot >= L:
            continue  # no room left for an answer (forward_dynamics with a full history)
        for mask in masks:
            assert mask["states"][: k + 1].all() and mask["actions"][:k].all()
            for array, placement in mode.layout:
                where = slots(placement, L, k)
                assert mask[ARRAYS[array].modality][where.start], (name, k, array)
            if mode.needs_return_target:
                assert mask["returns"][k]
            assert not mask[answer_modality][answer_slot], (name, k, mode.answer)


def test_the_published_schema_lists_the_tables_modes():
    """protocol.schema.json is for clients in other languages: its mode enums follow the table
    (the mode names, and the modes that require a return target)."""
    schema = wire.load_schema()
    assert schema["$defs"]["mode"]["enum"] == list(MODES)
    conditions = [c["if"]["properties"] for c in schema["$defs"]["request"]["allOf"]]
    needs_target = [c["mode"]["enum"] for c in conditions if "mode" in c]
    assert needs_target == [list(RETURN_MODES)]


# -- the predictor ------------------------------------------------------------------------------
class SlotTaggedForward:
    """A ForwardFn that records its calls and answers ``100 * call + slot`` everywhere."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    def __call__(self, inputs: dict[str, np.ndarray], masks: dict[str, np.ndarray]):
        self.calls.append(({n: v.copy() for n, v in inputs.items()}, masks))
        tag = 100.0 * len(self.calls) + np.arange(L, dtype=np.float32)[None, :, None]
        return {n: np.broadcast_to(tag, v.shape).astype(np.float32) for n, v in inputs.items()}


IDENTITY = Normalizer(
    {n: np.zeros(d, np.float32) for n, d in SPEC.modalities.items()},
    {n: np.ones(d, np.float32) for n, d in SPEC.modalities.items()},
)


@pytest.mark.parametrize("name", EVERY_MODE)
def test_the_predictor_places_inputs_and_reads_the_answer_where_the_table_says(name: str):
    mode = MODES[name]
    forward = SlotTaggedForward()
    predictor = Predictor(SPEC, IDENTITY, forward)
    fields = mode_inputs(mode, np.random.default_rng(0), history=L)  # more history than fits
    state = np.full(DS, 7.0)
    prediction = predictor.predict(Context(name, state, **fields))
    k = history_for(mode)
    assert prediction.history == k
    assert len(forward.calls) == mode.forwards
    inputs, _ = forward.calls[0]
    np.testing.assert_allclose(inputs["states"][0, k], state)
    np.testing.assert_allclose(inputs["states"][0, :k], fields["history_states"][-k:], rtol=1e-6)
    for array, placement in mode.layout:
        where = slots(placement, L, k)
        given = np.atleast_2d(fields[array])[: where.stop - where.start]
        placed = inputs[ARRAYS[array].modality][0, where.start : where.start + len(given)]
        np.testing.assert_allclose(placed, given, rtol=1e-6)
    if mode.needs_return_target:
        np.testing.assert_allclose(inputs["returns"][0], fields["return_target"], rtol=1e-6)
    rows = {n: 1 for n in mode.arrays if ARRAYS[n].rows}
    for (_, sent), want in zip(forward.calls, mask_lib.mode_masks(name, NAMES, L, k, **rows)):
        for n in NAMES:
            np.testing.assert_array_equal(sent[n][0], want[n])
    last = 100.0 * mode.forwards  # the answer is the last forward's
    for array, (_, placement) in REPLY_ARRAYS.items():
        expected = last + np.arange(L)[slots(placement, L, k)]
        answer = np.atleast_2d(getattr(prediction, array))  # (rows, dim): every dim the tag
        np.testing.assert_allclose(answer[:, 0], expected)


def test_a_mode_added_to_the_table_and_the_masks_runs_on_the_predictor_and_the_node(monkeypatch):
    """The recipe of docs/architecture.md: one table entry plus its masks, nothing else. A
    made-up ``waypoint`` mode (the desired next state as one vector after the current slot)
    must answer as ``inverse_dynamics`` with that one future state."""
    waypoint = Mode("waypoint", layout=(("goal_state", "after_current"),), needs_future_slot=True)
    monkeypatch.setitem(MODES, "waypoint", waypoint)
    monkeypatch.setitem(
        mask_lib.MODE_MASKS,
        "waypoint",
        lambda names, L, history: mask_lib.inverse_dynamics(names, L, history, 1),
    )
    rng = np.random.default_rng(3)
    predictor = Predictor(SPEC, IDENTITY, SlotTaggedForward())
    assert "waypoint" in predictor.modes
    target = rng.normal(size=DS)
    message = wire.Message(
        {"type": "act", "mode": "waypoint"}, {"state": np.zeros(DS), "goal_state": target}
    )
    context = context_from_message(message, SPEC, predictor.modes)
    np.testing.assert_array_equal(context.goal_state, target.astype(np.float32))
    tagged = SlotTaggedForward()
    Predictor(SPEC, IDENTITY, tagged).predict(context)
    reference = SlotTaggedForward()
    Predictor(SPEC, IDENTITY, reference).predict(
        Context("inverse_dynamics", np.zeros(DS), future_states=target[None])
    )
    for (got_in, got_mask), (want_in, want_mask) in zip(tagged.calls, reference.calls):
        for n in NAMES:
            np.testing.assert_array_equal(got_in[n], want_in[n])
            np.testing.assert_array_equal(got_mask[n], want_mask[n])


# -- a node, through the client -----------------------------------------------------------------
@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeClient, Predictor]]:
    """A node serving a tiny checkpoint on a random loopback port, a client, and the same
    checkpoint's Predictor in this process."""
    path = make_checkpoint(tmp_path_factory.mktemp("modes") / "tiny", 1, "tiny")
    context = zmq.Context()
    config = ServeConfig(
        checkpoint=str(path), bind="tcp://127.0.0.1:*", backend=BackendConfig(max_batch=2)
    )
    server = InferenceNode(config, context=context)
    server.run_in_thread()
    assert server.wait_ready(30)
    client = NodeClient(server.endpoint, timeout_ms=5000, context=context)
    checkpoint = load_checkpoint(path)
    yield client, Predictor.from_model(checkpoint.model, checkpoint.normalizer)
    client.close()
    server.close()
    context.destroy(linger=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", EVERY_MODE)
def test_a_node_answers_every_mode_through_the_client(node, name: str):
    client, predictor = node
    mode = MODES[name]
    rng = np.random.default_rng(1)
    state = rng.normal(1.0, 2.0, DS).astype(np.float32)
    fields = mode_inputs(mode, rng)
    reply = client.act(name, state, **fields).raise_for_status()
    assert reply.header["mode"] == name
    assert name in client.metadata()["modes"]
    local = predictor.predict(Context(name, state, **fields))
    for array in REPLY_ARRAYS:
        np.testing.assert_allclose(reply.arrays[array], getattr(local, array), atol=1e-5)
    assert reply.arrays[mode.answer].size > 0  # where the table says the answer is


# -- the controller and calibration -------------------------------------------------------------
class TinyPlant:
    """A plain-Python robot with the tiny model's shapes (5 states, 2 actions)."""

    task = "tiny"
    observation_dim, action_dim, control_hz = DS, DA, 40.0
    observation_names, observation_sizes = ("x",), (DS,)
    actuator_names = ("a0", "a1")

    def __init__(self) -> None:
        self.action_low, self.action_high = -np.ones(DA), np.ones(DA)
        self.state = np.zeros(DS)

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self.state = np.random.default_rng(seed).normal(1.0, 2.0, DS)
        return self.state.copy(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        assert np.all(np.abs(action) <= 1.0)
        self.state = self.state + 0.1 * np.resize(action, DS)
        return self.state.copy(), 0.0, False, False, {}

    def get_physics_state(self) -> None:
        return None

    def close(self) -> None:
        pass


class RecordingPort:
    """The client, recording each request's fields and each reply."""

    def __init__(self, client: NodeClient) -> None:
        self.client = client
        self.sent: list[dict[str, Any]] = []
        self.replies: list[Any] = []

    def submit(self, mode: str, state: np.ndarray, **fields: Any) -> int:
        self.sent.append(dict(fields, mode=mode))
        return self.client.submit(mode, state, **fields)

    def poll(self, request_id: int, timeout_ms: float = 0.0) -> Any:
        reply = self.client.poll(request_id, timeout_ms)
        if reply is not None:
            self.replies.append(reply)
        return reply

    def abandon(self, request_id: int) -> None:
        self.client.abandon(request_id)


def test_the_control_and_calibration_modes_come_from_the_table():
    # as before the table: the loop fills in desired states, calibration nothing
    assert set(CONTROL_MODES) == {
        "behavior_cloning", "return_conditioned", "inverse_dynamics", "two_stage"
    }  # fmt: skip
    assert set(action_modes()) == {"behavior_cloning", "return_conditioned", "two_stage"}
    for name in EVERY_MODE:
        if name in CONTROL_MODES:
            ControllerConfig(mode=name)
        else:
            with pytest.raises(ValueError, match=name):
                ControllerConfig(mode=name)
        if name in action_modes():
            CalibrationConfig(mode=name)
        else:
            with pytest.raises(ConfigError, match=name):
                CalibrationConfig(mode=name)


@pytest.mark.slow
@pytest.mark.parametrize("name", CONTROL_MODES)
def test_the_controller_asks_the_node_in_every_control_mode(node, name: str):
    client, _ = node
    mode = MODES[name]
    port = RecordingPort(client)
    reference = ReferenceTrajectory(np.random.default_rng(2).normal(1.0, 2.0, (20, DS)))
    config = ControllerConfig(mode=name, realtime=False, max_steps=3, history=2, target_return=1.0)
    result = Controller(TinyPlant(), port, config, reference=reference).run_episode(seed=0)
    assert result.ticks == 3 and list(result.telemetry.level) == ["model"] * 3
    for step, fields in enumerate(port.sent):
        expected = set(mode.allowed_arrays) - {"state"}
        if step == 0:
            expected -= {"history_states", "history_actions"}  # no history yet
        assert {f for f in fields if f in ARRAYS} == expected
        assert ("return_target" in fields) == mode.needs_return_target
    for reply, requested in zip(port.replies, result.telemetry.requested):
        np.testing.assert_allclose(requested, reply.arrays[mode.answer], rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", EVERY_MODE)
def test_calibration_builds_a_request_the_node_answers_in_every_mode(node, name: str):
    client, _ = node
    mode = MODES[name]
    state, fields = _request_fields(TinyPlant(), name, 1.0, seed=0, history=2)
    assert set(fields) - {"return_target"} == set(mode.allowed_arrays) - {"state"}
    assert ("return_target" in fields) == mode.needs_return_target
    reply = client.act(name, state, **fields).raise_for_status()
    assert reply.arrays[mode.answer].size > 0


# -- one home for the list of modes --------------------------------------------------------------
#: Where the list of modes may be spelled: the table itself.
MODES_HOME = {"client/mtm_robot_client/modes.py"}
#: String collections that name several modes but are not a list of inference modes, by file
#: (or folder, ending in /) and names, with why.
NOT_MODE_LISTS = {
    ("mtm_robot/training/", ("behavior_cloning", "return_conditioned",
     "inverse_dynamics", "forward_dynamics")):
        "the MLP baselines' tasks, named after the modes they imitate",
    ("mtm_robot/evaluation.py", ("behavior_cloning", "return_conditioned")):
        "the MLP baselines that act (BaselinePolicy)",
    ("mtm_robot/report/run_all.py", ("behavior_cloning", "return_conditioned")):
        "report job kinds: the MLP baselines that are scored",
    ("mtm_robot/report/studies.py", ("behavior_cloning", "return_conditioned")):
        "report job kinds: the MLP baselines that are scored",
    ("mtm_robot/report/tables.py", ("return_conditioned", "two_stage")):
        "the heteromodal table's two columns",
}  # fmt: skip
SCANNED = ("mtm_robot", "controllers", "calibration", "sim", "bench", "client", "launch")


def mode_lists(path: Path) -> Iterator[tuple[int, tuple[str, ...]]]:
    """(line, names) of each tuple, list or set literal naming two or more modes."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            names = tuple(
                e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in MODES
            )
            if len(set(names)) >= 2:
                yield node.lineno, names


def test_the_scan_finds_a_mode_list(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text('if mode in ("return_conditioned", "two_stage"):\n    pass\n')
    assert list(mode_lists(bad)) == [(1, ("return_conditioned", "two_stage"))]


def test_no_module_outside_the_table_spells_a_list_of_modes():
    found, excused = [], set()
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in MODES_HOME or "/tests/" in relative:
                continue
            for line, names in mode_lists(path):
                excuse = [
                    (where, listed)
                    for where, listed in NOT_MODE_LISTS
                    if listed == names
                    and (relative == where or (where.endswith("/") and relative.startswith(where)))
                ]
                if excuse:
                    excused.update(excuse)
                else:
                    found.append(f"{relative}:{line}: {names}")
    assert excused == set(NOT_MODE_LISTS), "an excuse no longer needed: remove it"
    assert not found, (
        "look the modes up in mtm_robot_client.modes (a Mode's properties, RETURN_MODES, "
        "action_modes()) instead of listing them:\n" + "\n".join(found)
    )
