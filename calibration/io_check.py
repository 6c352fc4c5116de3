"""Checking an I/O map against a simulator: sign, scale and ordering of every channel.

The model's action ``i`` means what actuator ``i`` of its training task did, and its state
element ``k`` what observation element ``k`` of that task held. The training task's own map
(:meth:`IOMap.identity`) is therefore the reference, and a map under test is right when the
simulator, driven and read through it, behaves like the reference.

**Actions.** From one fixed physics state, each model action in turn is excited by
``+/- delta`` (central difference, everything else neutral) for ``response_steps`` control
steps, once through the reference map and once through the map under test. The response is
the change of the joint velocities (read from the physics, so an observation-map error cannot
hide an action-map error). Model action ``i`` is right when its response matches the
reference response of action ``i``: the best-matching reference response names the actuator
it really drives (ordering), the sign of the match its sign, and the projection its scale.
The neutral action's response against the reference gives each actuator's offset.

**States.** The simulator's raw observations on a few short random rollouts are read through
both maps; state element ``k`` is right when it equals reference element ``k``
(correlation ~1, gain 1, offset 0). Otherwise the best-correlated reference element names
what it carries.

Every problem is reported with the names of the actuators and state elements involved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from controllers.io_map import IOMap, MappedEnv, describe_env
from mtm_robot.errors import ConfigError, SpecMismatchError
from sim import registry
from sim.env import SimEnv

log = logging.getLogger(__name__)


@dataclass
class IOCheckConfig:
    seed: int = 50_000_000  # reset seed of the excitation state (calibration seed range)
    delta: float = 0.2  # excitation, as a fraction of each action's half range
    response_steps: int = 1  # control steps each excitation is held for
    rollouts: int = 8  # random rollouts whose observations check the state map
    rollout_steps: int = 25
    min_similarity: float = 0.95  # |cosine| for a response to match an actuator
    scale_tolerance: float = 0.1  # relative error of a gain that still counts as 1
    offset_tolerance: float = 0.05  # of an action's half range / a state's spread
    state_min_correlation: float = 0.999  # a state element equals its reference one

    def __post_init__(self) -> None:
        if not 0 < self.delta <= 1:
            raise ConfigError(f"delta must be in (0, 1], got {self.delta}")
        if self.response_steps < 1 or self.rollouts < 1 or self.rollout_steps < 2:
            raise ConfigError(
                "response_steps, rollouts must be >= 1 and rollout_steps >= 2, got "
                f"{self.response_steps}, {self.rollouts}, {self.rollout_steps}"
            )


@dataclass
class Problem:
    """One thing wrong with a map, named: ``kind`` is order, sign, scale, offset, dead,
    unmatched (actions) or state_order, state_sign, state_scale, state_offset, state_unmatched."""

    kind: str
    names: list[str]
    message: str


@dataclass
class IOCheckResult:
    task: str
    action_names: list[str]  # the model's actions, named by the training task's actuators
    state_names: list[str]
    joint_names: list[str]  # the degrees of freedom whose velocities are the response
    problems: list[Problem]
    similarity: np.ndarray  # (A, A): cosine of the tested response of action i with reference j
    gain: np.ndarray  # (A,): projection of tested response i on its best reference match
    offset: np.ndarray  # (A,): each actuator's offset at the neutral action, in action units
    reference_response: np.ndarray  # (A, J) per unit action
    tested_response: np.ndarray  # (A, J)
    state_correlation: np.ndarray  # (S, S): tested state k against reference element m
    state_gain: np.ndarray  # (S,)
    state_offset: np.ndarray  # (S,)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """A YAML-safe summary."""
        return {
            "task": self.task,
            "ok": self.ok,
            "problems": [
                {"kind": p.kind, "names": p.names, "message": p.message} for p in self.problems
            ],
            "notes": list(self.notes),
            "actions": [
                {
                    "action": i,
                    "expected": name,
                    "drives": self.action_names[int(np.argmax(np.abs(self.similarity[i])))],
                    "similarity": round(float(self.similarity[i, i]), 4),
                    "gain": round(float(self.gain[i]), 4),
                    "offset": round(float(self.offset[i]), 4),
                }
                for i, name in enumerate(self.action_names)
            ],
            "states": [
                {
                    "state": k,
                    "expected": name,
                    "correlation": round(float(self.state_correlation[k, k]), 5),
                    "gain": round(float(self.state_gain[k]), 4),
                    "offset": round(float(self.state_offset[k]), 5),
                }
                for k, name in enumerate(self.state_names)
            ],
        }


def _dof_names(env: SimEnv) -> list[str]:
    model = env.mj_model
    names = []
    for d in range(model.nv):
        joint = model.joint(int(model.dof_jntid[d]))
        first = int(model.jnt_dofadr[joint.id])
        ndof = sum(1 for j in model.dof_jntid if j == joint.id)
        names.append(joint.name if ndof == 1 else f"{joint.name}[{d - first}]")
    return names


def _joint_velocities(env: SimEnv) -> np.ndarray:
    return np.array(env.mj_data.qvel, dtype=np.float64)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine matrix between the rows of ``a`` and ``b``."""
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1, keepdims=True)
    return (a / np.maximum(na, 1e-300)) @ (b / np.maximum(nb, 1e-300)).T


class _Exciter:
    """Steps ``env`` through a map from one fixed physics state and reads the joints."""

    def __init__(self, raw: SimEnv, env: MappedEnv, start: np.ndarray, steps: int) -> None:
        self.raw, self.env, self.start, self.steps = raw, env, start, steps

    def joints_after(self, action: np.ndarray) -> np.ndarray:
        self.raw.set_physics_state(self.start)
        a = np.clip(action, self.env.action_low, self.env.action_high)
        for _ in range(self.steps):
            self.env.step(a)
        return _joint_velocities(self.raw)


def check_io_map(
    task: str,
    io_map: IOMap,
    config: IOCheckConfig | None = None,
    progress: bool = False,
) -> IOCheckResult:
    """Excite every channel of ``io_map`` on ``task``'s simulator; see the module docstring."""
    from tqdm import tqdm

    c = config or IOCheckConfig()
    raw = registry.make(task)
    try:
        fields, actuators = describe_env(raw)
        reference_map = IOMap.identity(raw.task, fields, actuators)
        reference = MappedEnv(raw, reference_map, fields, actuators)
        tested = MappedEnv(raw, io_map, fields, actuators)  # raises with a diff on mismatch
        if tested.action_dim != reference.action_dim:
            raise SpecMismatchError(
                f"the map has {tested.action_dim} actions, task '{raw.task}' has "
                f"{reference.action_dim}"
            )
        n_actions = reference.action_dim
        joint_names = _dof_names(raw)
        neutral = (reference.action_low + reference.action_high) / 2
        start, start_seed = _contact_free_start(raw, reference, neutral, c)
        half = (reference.action_high - reference.action_low) / 2
        ref_x = _Exciter(raw, reference, start, c.response_steps)
        test_x = _Exciter(raw, tested, start, c.response_steps)
        ref_resp = np.zeros((n_actions, len(joint_names)))
        test_resp = np.zeros_like(ref_resp)
        bar = tqdm(total=2 * n_actions + 2 + c.rollouts, desc="io map", disable=not progress)
        for i in range(n_actions):
            step = np.zeros(n_actions)
            step[i] = c.delta * half[i]
            for x, resp in ((ref_x, ref_resp), (test_x, test_resp)):
                resp[i] = (x.joints_after(neutral + step) - x.joints_after(neutral - step)) / (
                    2 * step[i]
                )
                bar.update()
        neutral_diff = test_x.joints_after(neutral) - ref_x.joints_after(neutral)
        bar.update(2)
        ref_states, test_states = _rollout_states(raw, reference_map, io_map, c, bar)
        bar.close()
    finally:
        raw.close()

    names = list(actuators[:n_actions])
    notes = [f"excited from the reset state of seed {start_seed}"]
    if start_seed < 0:
        notes[0] = f"no contact-free reset state in seeds {c.seed}..{c.seed + 19}: excited "
        notes[0] += f"from seed {c.seed}, with contacts (responses may be less linear)"
    similarity, gain, offset, problems = _action_problems(
        ref_resp, test_resp, neutral_diff, half, names, c, notes
    )
    state_names = reference_map.state_names()
    corr, sgain, soffset, sproblems = _state_problems(ref_states, test_states, state_names, c)
    return IOCheckResult(
        raw.task,
        names,
        state_names,
        joint_names,
        problems + sproblems,
        similarity,
        gain,
        offset,
        ref_resp,
        test_resp,
        corr,
        sgain,
        soffset,
        notes,
    )


def _action_problems(
    ref_resp: np.ndarray,
    test_resp: np.ndarray,
    neutral_diff: np.ndarray,
    half: np.ndarray,
    names: list[str],
    c: IOCheckConfig,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Problem]]:
    """(similarity, gain, offset, problems) of the actions from their joint responses."""
    n_actions = len(names)
    problems: list[Problem] = []
    separation = np.abs(_cosine(ref_resp, ref_resp)) - np.eye(n_actions)
    if separation.max() >= c.min_similarity:
        i, j = (int(v) for v in np.unravel_index(int(np.argmax(separation)), separation.shape))
        notes.append(
            f"'{names[i]}' and '{names[j]}' respond alike from this state "
            f"(|cos| {separation[i, j]:.3f}): their order cannot be told apart"
        )
    similarity = _cosine(test_resp, ref_resp)
    gain = np.zeros(n_actions)
    drives = [-1] * n_actions
    ref_norm = np.linalg.norm(ref_resp, axis=1)
    for i in range(n_actions):
        j = int(np.argmax(np.abs(similarity[i])))
        gain[i] = float(test_resp[i] @ ref_resp[j] / max(ref_norm[j] ** 2, 1e-300))
        test_norm = float(np.linalg.norm(test_resp[i]))
        if test_norm < 1e-3 * ref_norm[i]:
            problems.append(
                Problem("dead", [names[i]], f"model action {i} ('{names[i]}') moves no joint")
            )
            continue
        if abs(similarity[i, j]) < c.min_similarity:
            problems.append(
                Problem(
                    "unmatched",
                    [names[i]],
                    f"model action {i} ('{names[i]}') moves the joints like no single actuator "
                    f"(best '{names[j]}', |cos| {abs(similarity[i, j]):.2f})",
                )
            )
            continue
        drives[i] = j
    problems += _order_problems(drives, names)
    for i, j in enumerate(drives):
        if j < 0:
            continue
        shown = f"model action {i} ('{names[i]}')" + (
            f", which drives '{names[j]}'," if j != i else ""
        )
        if gain[i] < 0:
            problems.append(
                Problem("sign", [names[j]], f"{shown} has its sign flipped (gain {gain[i]:.3g})")
            )
        if abs(abs(gain[i]) - 1) > c.scale_tolerance:
            problems.append(
                Problem(
                    "scale",
                    [names[j]],
                    f"{shown} is scaled {abs(gain[i]):.3g}x the expected "
                    f"(tolerance {c.scale_tolerance:.0%})",
                )
            )
    # the neutral action's response explained by per-actuator offsets (in action units)
    offset, *_ = np.linalg.lstsq(ref_resp.T, neutral_diff, rcond=None)
    for j in (int(v) for v in np.flatnonzero(np.abs(offset) > c.offset_tolerance * half)):
        problems.append(
            Problem(
                "offset",
                [names[j]],
                f"actuator '{names[j]}' is offset by {offset[j]:+.3g} (action units) when the "
                "model asks for neutral",
            )
        )
    return similarity, gain, offset, problems


def _contact_free_start(
    raw: SimEnv, env: MappedEnv, neutral: np.ndarray, c: IOCheckConfig
) -> tuple[np.ndarray, int]:
    """A reset state with no contact during the response window (responses are then nearly
    linear in the action); (state, seed), seed -1 when none of 20 seeds gives one."""
    data = raw.mj_data
    for seed in range(c.seed, c.seed + 20):
        raw.reset(seed=seed)
        start = raw.get_physics_state()
        contacts = int(data.ncon)
        for _ in range(c.response_steps):
            env.step(neutral)
            contacts += int(data.ncon)
        if contacts == 0:
            return start, seed
    raw.reset(seed=c.seed)
    return raw.get_physics_state(), -1


def _order_problems(drives: list[int], names: list[str]) -> list[Problem]:
    """Ordering problems, with swapped pairs reported as one problem."""
    problems: list[Problem] = []
    seen: set[int] = set()
    for i, j in enumerate(drives):
        if j < 0 or j == i or i in seen:
            continue
        if 0 <= j < len(drives) and drives[j] == i:
            seen.update((i, j))
            problems.append(
                Problem(
                    "order",
                    [names[i], names[j]],
                    f"'{names[i]}' and '{names[j]}' are swapped: model action {i} drives "
                    f"'{names[j]}' and model action {j} drives '{names[i]}'",
                )
            )
        else:
            seen.add(i)
            problems.append(
                Problem(
                    "order",
                    [names[i], names[j]],
                    f"model action {i} ('{names[i]}') drives '{names[j]}'",
                )
            )
    return problems


def _rollout_states(
    raw: SimEnv, reference_map: IOMap, io_map: IOMap, c: IOCheckConfig, bar: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Raw observations of short random rollouts, read through both maps."""
    rng = np.random.default_rng(c.seed)
    ref, test = [], []
    for r in range(c.rollouts):
        obs, _ = raw.reset(seed=c.seed + 1 + r)
        for _ in range(c.rollout_steps):
            ref.append(reference_map.state_from_raw(obs))
            test.append(io_map.state_from_raw(obs))
            obs, _, terminated, truncated, _ = raw.step(
                rng.uniform(raw.action_low, raw.action_high)
            )
            if terminated or truncated:
                break
        bar.update()
    return np.asarray(ref), np.asarray(test)


def _state_problems(
    ref: np.ndarray, test: np.ndarray, names: list[str], c: IOCheckConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Problem]]:
    ref_c, test_c = ref - ref.mean(0), test - test.mean(0)
    ref_sd, test_sd = ref_c.std(0), test_c.std(0)
    corr = _cosine(test_c.T, ref_c.T)  # (S, S)
    n = ref.shape[1]
    gain = np.array(
        [
            test_c[:, k] @ ref_c[:, k] / max(float(ref_c[:, k] @ ref_c[:, k]), 1e-300)
            for k in range(n)
        ]
    )
    offset = test.mean(0) - gain * ref.mean(0)
    problems = []
    for k in range(n):
        name = names[k]
        if ref_sd[k] < 1e-9:
            if abs(test.mean(0)[k] - ref.mean(0)[k]) > 1e-6 or test_sd[k] > 1e-9:
                problems.append(
                    Problem(
                        "state_unmatched",
                        [name],
                        f"state {k} ('{name}') should be constant "
                        f"{ref.mean(0)[k]:.4g}, the map gives {test.mean(0)[k]:.4g}",
                    )
                )
            continue
        if abs(corr[k, k]) < c.state_min_correlation:
            m = int(np.argmax(np.abs(corr[k])))
            if abs(corr[k, m]) >= c.state_min_correlation:
                sign = "" if corr[k, m] > 0 else " with its sign flipped"
                problems.append(
                    Problem(
                        "state_order",
                        [name, names[m]],
                        f"state {k} ('{name}') carries '{names[m]}'{sign}",
                    )
                )
            else:
                problems.append(
                    Problem(
                        "state_unmatched",
                        [name],
                        f"state {k} ('{name}') matches no expected element "
                        f"(best '{names[m]}', |corr| {abs(corr[k, m]):.3f})",
                    )
                )
            continue
        if gain[k] < 0:
            problems.append(
                Problem("state_sign", [name], f"state {k} ('{name}') has its sign flipped")
            )
        if abs(abs(gain[k]) - 1) > c.scale_tolerance:
            problems.append(
                Problem(
                    "state_scale",
                    [name],
                    f"state {k} ('{name}') is scaled {abs(gain[k]):.4g}x the expected",
                )
            )
        elif (
            abs(test.mean(0)[k] - ref.mean(0)[k] * np.sign(gain[k]))
            > c.offset_tolerance * ref_sd[k]
        ):
            problems.append(
                Problem(
                    "state_offset",
                    [name],
                    f"state {k} ('{name}') is offset by "
                    f"{test.mean(0)[k] - gain[k] * ref.mean(0)[k]:+.4g}",
                )
            )
    return corr, gain, offset, problems
