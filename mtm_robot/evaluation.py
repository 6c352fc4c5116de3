"""Models as batch policies for the closed-loop evaluator (``sim.evaluation.evaluate``).

An MTM runs through the same :class:`~mtm_robot.inference.Predictor` the inference node runs
(so the evaluator's scores are a lockstep session's); an MLP baseline through its ``predict``.
Both get their return target from :func:`mtm_robot.return_target.default_return_target` when
none is given.

    policy = MTMPolicy.from_checkpoint("default", "return_conditioned")
    result = sim.evaluation.evaluate(policy, "walker-walk", seeds)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtm_robot.inference import Context, Prediction, Predictor
from mtm_robot.return_target import default_return_target
from mtm_robot.training.baselines import Baseline
from mtm_robot_client.modes import get_mode

#: ``(episode, step, state) -> (f, ds)`` desired next states (``inverse_dynamics``), e.g. a
#: reference trajectory per episode (``controllers.reference.ReferenceTrajectory.desired``).
FutureStates = Callable[[int, int, np.ndarray], np.ndarray]


@dataclass
class MTMPolicy:
    """An MTM in one inference mode, with the controller's default history of 2 pairs."""

    predictor: Predictor
    mode: str
    return_target: float | None = None
    history: int = 2
    future_states: FutureStates | None = None
    model_id: str = ""  # the checkpoint's, for reports

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        mode: str,
        target_fraction: float = 1.0,
        return_target: float | None = None,
        future_states: FutureStates | None = None,
    ) -> MTMPolicy:
        """Load a checkpoint directory (or ``"default"``) on the CPU, the target by the rule."""
        from mtm_robot.training.checkpoint import load_checkpoint, resolve_checkpoint_path

        loaded = load_checkpoint(resolve_checkpoint_path(str(checkpoint)))
        predictor = Predictor.from_model(loaded.model, loaded.normalizer)
        target = default_return_target(loaded.metadata, target_fraction, return_target)
        model_id = str(loaded.metadata.get("model_id", ""))
        return cls(predictor, mode, target, future_states=future_states, model_id=model_id)

    def context(
        self,
        episode: int,
        step: int,
        state: np.ndarray,
        history_states: np.ndarray,
        history_actions: np.ndarray,
        **inputs: Any,
    ) -> Context:
        """The request for one episode's state and history: the one home of building an MTM
        request from a history, for this batched adapter and the single-episode
        :class:`mtm_robot.policy.Policy`. ``inputs`` (``return_target`` in model units,
        ``future_states``, ``goal_state``, ``planned_actions``) override the policy's own."""
        if inputs.get("return_target") is None:
            inputs["return_target"] = self.return_target
        if inputs.get("future_states") is None and self.future_states is not None:
            inputs["future_states"] = self.future_states(episode, step, state)
        mode = get_mode(self.mode)
        if missing := [name for name in mode.arrays if inputs.get(name) is None]:
            raise ValueError(f"{mode.name} needs {', '.join(missing)} ({mode.summary})")
        return Context(
            self.mode,
            state,
            history_states if len(history_states) else None,
            history_actions if len(history_actions) else None,
            **inputs,
        )

    def predict(
        self,
        episodes: Sequence[int],
        step: int,
        states: np.ndarray,
        history_states: Sequence[np.ndarray],
        history_actions: Sequence[np.ndarray],
        inputs: Sequence[dict[str, Any]] | None = None,
    ) -> list[Prediction]:
        """Every episode's prediction in one batched forward; ``inputs`` per episode as in
        :meth:`context`."""
        per_episode = inputs if inputs is not None else [{} for _ in episodes]
        contexts = [
            self.context(episode, step, state, hs, ha, **extra)
            for episode, state, hs, ha, extra in zip(
                episodes, states, history_states, history_actions, per_episode
            )
        ]
        return self.predictor.predict_batch(contexts)

    def act(
        self,
        episodes: Sequence[int],
        step: int,
        states: np.ndarray,
        history_states: Sequence[np.ndarray],
        history_actions: Sequence[np.ndarray],
    ) -> np.ndarray:
        predictions = self.predict(episodes, step, states, history_states, history_actions)
        return np.stack([p.action for p in predictions])


@dataclass
class BaselinePolicy:
    """A specialised MLP: behaviour cloning (s -> a) or return-conditioned (s, R -> a)."""

    baseline: Baseline
    return_target: float | None = None
    history: int = 0

    def __post_init__(self) -> None:
        if self.baseline.task not in ("behavior_cloning", "return_conditioned"):
            raise ValueError(f"a {self.baseline.task} baseline is not a policy")
        if self.baseline.task == "return_conditioned" and self.return_target is None:
            raise ValueError("a return-conditioned baseline needs a return target")

    def act(
        self,
        episodes: Sequence[int],
        step: int,
        states: np.ndarray,
        history_states: Sequence[np.ndarray],
        history_actions: Sequence[np.ndarray],
    ) -> np.ndarray:
        if self.baseline.task == "behavior_cloning":
            return self.baseline.predict(states)
        target = np.full((len(states), 1), self.return_target, dtype=np.float32)
        return self.baseline.predict(states, target)
