"""A policy for notebooks and scripts: ``act(observation)`` in any inference mode.

::

    import mtm_robot

    policy = mtm_robot.load_policy("default")        # the shipped walker-walk model, on the CPU
    policy.reset()                                   # at the start of every episode
    action = policy.act(observation)                 # clipped to the task's action bounds

A :class:`Policy` keeps the episode's short history itself (the last ``history`` states and
the actions applied in them, the controller's default of 2) and builds each request from it,
so a notebook passes only the observation and what the mode needs on top (``future_states``
for ``inverse_dynamics``, ``planned_actions`` for ``forward_dynamics``, ``goal_state`` for
``goal``). It answers what the mode is for (``mtm_robot_client.modes``: ``Mode.answer``): an
action, or for ``forward_dynamics`` the predicted next states.

By default actions come back clipped to the action bounds recorded in the checkpoint
(``clip=False`` returns the model's raw action), and return targets are read in
episode-return units (``return_target_units="episode_return"``: 900 on walker-walk means an
episode return of 900; ``"model"`` and ``"normalized"`` as in ``docs/protocol.md`` section 4).
With no target given, the default rule (:mod:`mtm_robot.return_target`) picks the top of the
model's training range.

The same ``Policy`` runs in this process (:func:`load_policy`: an MTM through
:class:`mtm_robot.evaluation.MTMPolicy`, the batched evaluator's adapter, with a batch of one)
or on an inference node (:func:`connect_policy`: requests through
:class:`mtm_robot_client.NodeClient`, no torch in this process). Both convert return targets
with the node's :class:`~mtm_robot.serving.contexts.ReturnScale` (the remote one on the node),
so a local and a remote policy give the same action for the same inputs.

Importing this module does not import torch; :func:`load_policy` does.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mtm_robot.checkpoint_meta import action_bounds as read_action_bounds
from mtm_robot.errors import ConfigError
from mtm_robot.return_target import default_return_target
from mtm_robot_client.modes import ARRAYS, REPLY_ARRAYS, RETURN_MODES, RETURN_UNITS, get_mode

if TYPE_CHECKING:
    from mtm_robot.evaluation import MTMPolicy
    from mtm_robot.serving.contexts import ReturnScale
    from mtm_robot.training.checkpoint import Checkpoint
    from mtm_robot_client import NodeClient

log = logging.getLogger(__name__)

#: The arrays of every answer (``Policy.last``): the action now, the action chunk from now on,
#: and the predicted states after now (a node's reply arrays).
ANSWER_ARRAYS = tuple(REPLY_ARRAYS)


class Backend(Protocol):
    """Where a :class:`Policy`'s requests run: this process or an inference node."""

    model_id: str
    task: str
    modes: tuple[str, ...]
    state_dim: int
    action_dim: int

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The model's metadata (``return_stats``, ``action_bounds``; a checkpoint's or the
        node's ``metadata`` reply)."""
        ...

    def answer(
        self,
        mode: str,
        step: int,
        state: np.ndarray,
        history_states: np.ndarray,
        history_actions: np.ndarray,
        inputs: dict[str, Any],
    ) -> dict[str, np.ndarray]:
        """``ANSWER_ARRAYS`` for one request; ``inputs`` holds the mode's arrays and, for a
        return mode, ``return_target`` with its ``return_target_units``."""
        ...

    def close(self) -> None: ...


class LocalBackend:
    """An MTM in this process: the evaluator's :class:`~mtm_robot.evaluation.MTMPolicy` on a
    batch of one, return targets converted by the node's ``ReturnScale``."""

    def __init__(self, checkpoint: Checkpoint, device: str = "cpu") -> None:
        from mtm_robot.inference import Predictor, torch_forward
        from mtm_robot.serving.contexts import ReturnScale

        forward = torch_forward(checkpoint.model.to(device), device)
        self.predictor = Predictor(checkpoint.spec, checkpoint.normalizer, forward)
        self.metadata = checkpoint.metadata
        self.model_id = checkpoint.model_id
        self.task = str(checkpoint.metadata.get("task") or "")
        self.modes = self.predictor.modes
        self.state_dim = checkpoint.spec.modalities["states"]
        self.action_dim = checkpoint.spec.modalities["actions"]
        self.returns: ReturnScale = ReturnScale.from_metadata(checkpoint.metadata)
        self._cores: dict[str, MTMPolicy] = {}

    def _core(self, mode: str) -> MTMPolicy:
        from mtm_robot.evaluation import MTMPolicy

        if mode not in self._cores:
            self._cores[mode] = MTMPolicy(self.predictor, mode, model_id=self.model_id)
        return self._cores[mode]

    def answer(
        self,
        mode: str,
        step: int,
        state: np.ndarray,
        history_states: np.ndarray,
        history_actions: np.ndarray,
        inputs: dict[str, Any],
    ) -> dict[str, np.ndarray]:
        from mtm_robot_client.errors import ProtocolError, error_for

        inputs = dict(inputs)
        if "return_target" in inputs:
            value = float(inputs.pop("return_target"))
            units = str(inputs.pop("return_target_units"))
            try:  # the node's conversion and range check, raising what a node's reply would
                target = self.returns.to_model(value, units)
                self.returns.check(target, value, units)
            except ProtocolError as exc:
                raise error_for(exc.code, exc.message) from None
            inputs["return_target"] = target
        core = self._core(mode)
        prediction = core.predict([0], step, state[None], [history_states], [history_actions],
                                  [inputs])[0]  # fmt: skip
        return {name: getattr(prediction, name) for name in ANSWER_ARRAYS}

    def close(self) -> None:
        pass


class RemoteBackend:
    """An inference node, through a :class:`~mtm_robot_client.NodeClient` (no torch here)."""

    def __init__(self, client: NodeClient, own_client: bool = False) -> None:
        meta = client.metadata()
        self.client = client
        self.own_client = own_client
        self.metadata = meta
        self.model_id = str(meta.get("model_id", ""))
        self.task = str(meta.get("task") or "")
        self.modes = tuple(meta["modes"])
        self.state_dim = int(meta["modalities"]["states"])
        self.action_dim = int(meta["modalities"]["actions"])

    def answer(
        self,
        mode: str,
        step: int,
        state: np.ndarray,
        history_states: np.ndarray,
        history_actions: np.ndarray,
        inputs: dict[str, Any],
    ) -> dict[str, np.ndarray]:
        fields = dict(inputs)
        if len(history_states):
            fields.update(history_states=history_states, history_actions=history_actions)
        reply = self.client.act(mode, state, **fields)
        return {name: reply.arrays[name] for name in ANSWER_ARRAYS}

    def close(self) -> None:
        if self.own_client:
            self.client.close()


class Policy:
    """A model in one inference mode, acting on one episode at a time.

    ``history``: past (state, applied action) pairs each request carries (the controller's
    default 2; the model keeps what fits its segment). ``return_target`` (return modes): in
    ``return_target_units`` (default ``"episode_return"``); None: the default rule, the top of
    the training range. ``clip``: clip actions to ``action_bounds`` (default: the checkpoint's
    ``action_bounds``; a policy that should clip but knows no bounds is refused). The history
    records each step's action as applied within the bounds, as the controller does.
    """

    def __init__(
        self,
        backend: Backend,
        mode: str = "return_conditioned",
        *,
        history: int = 2,
        return_target: float | None = None,
        return_target_units: str = "episode_return",
        clip: bool = True,
        action_bounds: tuple[Any, Any] | None = None,
    ) -> None:
        get_mode(mode)  # an unknown mode: ValueError naming the modes there are
        if mode not in backend.modes:
            raise ConfigError(
                f"mode {mode!r} is not served by model {backend.model_id!r}; modes: "
                f"{list(backend.modes)}"
            )
        if return_target_units not in RETURN_UNITS:
            raise ConfigError(
                f"return_target_units {return_target_units!r} unknown; expected one of "
                f"{list(RETURN_UNITS)}"
            )
        if history < 0:
            raise ConfigError(f"history must be >= 0 past steps, got {history}")
        if return_target is not None and not get_mode(mode).needs_return_target:
            raise ConfigError(
                f"mode {mode!r} takes no return_target (modes that do: {RETURN_MODES})"
            )
        self.backend = backend
        self._mode = mode
        self.history = history
        self.return_target = return_target
        self.return_target_units = return_target_units
        self.clip = clip
        self.action_low, self.action_high = self._bounds(action_bounds)
        if clip and self.action_low is None:
            raise ConfigError(
                f"model {backend.model_id!r} records no action_bounds to clip to: pass "
                "action_bounds=(low, high) (e.g. the env's action_low, action_high) or clip=False"
            )
        self._states: deque[np.ndarray] = deque(maxlen=history)
        self._actions: deque[np.ndarray] = deque(maxlen=history)
        self.step = 0  # act calls since the last reset
        #: the arrays of the last answer (``ANSWER_ARRAYS``), as the model gave them (unclipped)
        self.last: dict[str, np.ndarray] = {}

    def _bounds(self, given: tuple[Any, Any] | None) -> tuple[np.ndarray | None, np.ndarray | None]:
        da = self.backend.action_dim
        if given is None:
            recorded = read_action_bounds(self.backend.metadata, da)
            if recorded is None:
                return None, None
            given = recorded
        low = np.asarray(given[0], np.float32).reshape(-1)
        high = np.asarray(given[1], np.float32).reshape(-1)
        if low.shape != (da,) or high.shape != (da,) or not np.all(low <= high):
            raise ConfigError(
                f"action_bounds: expected low <= high, {da} values each, got "
                f"{low.tolist()} and {high.tolist()}"
            )
        return low, high

    # -- the episode -------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    @property
    def model_id(self) -> str:
        return self.backend.model_id

    def reset(self) -> None:
        """Start a new episode: forget the history."""
        self._states.clear()
        self._actions.clear()
        self.step = 0
        self.last = {}

    def act(
        self,
        observation: Any,
        *,
        return_target: float | None = None,
        future_states: Any = None,
        goal_state: Any = None,
        planned_actions: Any = None,
        clip: bool | None = None,
    ) -> np.ndarray:
        """The mode's answer for ``observation``, then record the step in the history.

        An action (``(da,)``, clipped unless ``clip=False``), or for ``forward_dynamics`` the
        predicted states after each planned action the segment has room for (``(p, ds)``).
        ``future_states``: the desired next state(s) of ``inverse_dynamics`` (``(ds,)`` or
        ``(f, ds)``); ``planned_actions``: ``forward_dynamics``'s actions from now on (``(da,)``
        or ``(p, da)``), the first being the one applied now; ``goal_state``: ``goal``'s
        target. ``return_target`` overrides the policy's for this call.
        """
        mode = get_mode(self._mode)
        state = np.asarray(observation, dtype=np.float32)
        if state.shape != (self.backend.state_dim,):
            raise ValueError(
                f"observation: expected shape ({self.backend.state_dim},), got {state.shape}"
            )
        given = {"future_states": future_states, "goal_state": goal_state,
                 "planned_actions": planned_actions}  # fmt: skip
        inputs: dict[str, Any] = {}
        for name, value in given.items():
            if value is None:
                if name in mode.arrays:
                    raise ValueError(f"mode {mode.name} needs {name} ({mode.summary})")
                continue
            if name not in mode.arrays:
                raise ValueError(f"mode {mode.name} takes no {name}")
            array = np.asarray(value, dtype=np.float32)
            inputs[name] = np.atleast_2d(array) if ARRAYS[name].rows else array
        if mode.needs_return_target:
            inputs.update(self._target(return_target))
        elif return_target is not None:
            raise ValueError(f"mode {mode.name} takes no return_target")
        history_states, history_actions = self._history()
        answer = self.backend.answer(
            mode.name, self.step, state, history_states, history_actions, inputs
        )
        self.last = answer
        # the action applied now: the model's, or the mode's own input (forward_dynamics)
        action = answer["action"] if mode.applied == "action" else inputs[mode.applied][0]
        self._record(state, self._clipped(action))
        if mode.answer != "action":  # e.g. the states after each planned action that fits
            rows = min(len(inputs[mode.applied]), len(answer[mode.answer]))
            return answer[mode.answer][:rows]
        clip = self.clip if clip is None else clip
        return self._clipped(action) if clip else np.asarray(action, dtype=np.float32)

    def _target(self, given: float | None) -> dict[str, Any]:
        value = given if given is not None else self.return_target
        if value is not None:
            return {"return_target": float(value), "return_target_units": self.return_target_units}
        default = default_return_target(self.backend.metadata)
        if default is None:
            raise ConfigError(
                f"model {self.model_id!r} has no training return range for a default return "
                "target: pass return_target"
            )
        return {"return_target": default, "return_target_units": "model"}

    def _history(self) -> tuple[np.ndarray, np.ndarray]:
        ds, da = self.backend.state_dim, self.backend.action_dim
        if not self._states:
            return np.zeros((0, ds), np.float32), np.zeros((0, da), np.float32)
        return np.stack(self._states), np.stack(self._actions)

    def _record(self, state: np.ndarray, applied: np.ndarray) -> None:
        if self.history:
            self._states.append(state)
            self._actions.append(applied)
        self.step += 1

    def _clipped(self, action: np.ndarray) -> np.ndarray:
        action = np.asarray(action, dtype=np.float32)
        if self.action_low is None or self.action_high is None:
            return action
        return np.clip(action, self.action_low, self.action_high)

    # -- resources ---------------------------------------------------------------------------
    def close(self) -> None:
        """Close the node connection this policy opened (a local policy holds none)."""
        self.backend.close()

    def __enter__(self) -> Policy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = type(self.backend).__name__.removesuffix("Backend").lower()
        return f"Policy({self.model_id!r}, mode={self._mode!r}, {where})"


def load_policy(
    checkpoint: str | Path | Checkpoint = "default",
    mode: str = "return_conditioned",
    *,
    device: str = "cpu",
    **options: Any,
) -> Policy:
    """A :class:`Policy` running ``checkpoint`` (a directory, ``"default"`` for the shipped
    walker-walk model, or a loaded :class:`~mtm_robot.training.checkpoint.Checkpoint`) in
    this process; ``options`` as :class:`Policy` takes them."""
    from mtm_robot.training.checkpoint import Checkpoint, load_checkpoint

    loaded = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    return Policy(LocalBackend(loaded, device), mode, **options)


def connect_policy(
    endpoint: str | NodeClient = "tcp://127.0.0.1:5555",
    mode: str = "return_conditioned",
    *,
    timeout_ms: float = 1000.0,
    **options: Any,
) -> Policy:
    """A :class:`Policy` whose requests run on the inference node at ``endpoint`` (or through
    a connected ``NodeClient``, which stays the caller's to close); ``options`` as
    :class:`Policy` takes them. Every ``act`` waits for its reply up to ``timeout_ms``."""
    from mtm_robot_client import NodeClient

    if isinstance(endpoint, NodeClient):
        return Policy(RemoteBackend(endpoint), mode, **options)
    client = NodeClient(endpoint, timeout_ms=timeout_ms)
    try:
        return Policy(RemoteBackend(client, own_client=True), mode, **options)
    except BaseException:
        client.close()
        raise
