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

import numpy as np

from mtm_robot.inference import Context, Predictor
from mtm_robot.return_target import default_return_target
from mtm_robot.training.baselines import Baseline

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

    def __post_init__(self) -> None:
        if self.mode == "inverse_dynamics" and self.future_states is None:
            raise ValueError("inverse_dynamics needs future_states (desired next states)")

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

    def act(
        self,
        episodes: Sequence[int],
        step: int,
        states: np.ndarray,
        history_states: Sequence[np.ndarray],
        history_actions: Sequence[np.ndarray],
    ) -> np.ndarray:
        contexts = []
        for episode, state, hs, ha in zip(episodes, states, history_states, history_actions):
            future = None
            if self.future_states is not None:
                future = self.future_states(episode, step, state)
            contexts.append(
                Context(
                    self.mode,
                    state,
                    hs if len(hs) else None,
                    ha if len(ha) else None,
                    return_target=self.return_target,
                    future_states=future,
                )
            )
        return np.stack([p.action for p in self.predictor.predict_batch(contexts)])


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
