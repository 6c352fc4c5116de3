"""Mask building: the one home for every MTM mask, training and inference alike.

A mask maps each modality name to a boolean array of shape (L,): True = visible (model input),
False = masked (to be reconstructed). Functions are pure; the random ones take an explicit
``numpy.random.Generator``. After the reference code (github.com/facebookresearch/mtm,
``research/mtm/masks.py`` and the mask sampling in ``research/mtm/train.py``) of the MTM paper
(Wu et al., ICML 2023, arXiv 2305.02968).

Inference slot layout (control): slots ``0..k-1`` hold the last ``k`` executed
(state, action) pairs, slot ``k`` the current state, later slots the future. ``k`` is called
``history`` below and is at most L-1. The inference modes are described in
:mod:`mtm_robot_client.modes`; :data:`MODE_MASKS` gives each its masks, by its name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from mtm_robot.errors import ConfigError
from mtm_robot_client.modes import MODES

Mask = dict[str, np.ndarray]

#: Modality order inside a timestep for the random-autoregressive cut (reference 4.3).
AUTOREGRESSIVE_ORDER = ("states", "returns", "rewards", "actions")
#: Training patterns: the two random ones, and every single-forward inference mode's mask.
TRAINING_PATTERNS = (
    "random",
    "random_autoregressive",
    *(name for name, mode in MODES.items() if mode.forwards == 1),
)
DEFAULT_KEEP_RATIOS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.0)
#: Which modality the random-autoregressive cut falls on, by weight (reference 4.3).
DEFAULT_MODALITY_WEIGHTS = {"states": 0.2, "returns": 0.1, "actions": 0.7}


@dataclass
class MaskConfig:
    """How training masks are drawn."""

    #: Old key names still read from checkpoints and presets (see ``config.from_dict``).
    RENAMED_KEYS: ClassVar[dict[str, str]] = {"mode_weights": "modality_weights"}

    patterns: dict[str, float] = field(default_factory=lambda: {"random_autoregressive": 1.0})
    keep_ratios: list[float] = field(default_factory=lambda: list(DEFAULT_KEEP_RATIOS))
    modality_weights: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_MODALITY_WEIGHTS)
    )

    def __post_init__(self) -> None:
        for name, weight in self.patterns.items():
            if name not in TRAINING_PATTERNS:
                raise ConfigError(f"unknown mask pattern '{name}'; known: {TRAINING_PATTERNS}")
            if weight < 0:
                raise ConfigError(f"mask pattern '{name}': weight must be >= 0, got {weight}")
        if not self.patterns or sum(self.patterns.values()) <= 0:
            raise ConfigError("masks.patterns needs at least one pattern with positive weight")
        if not self.keep_ratios or not all(0.0 <= r <= 1.0 for r in self.keep_ratios):
            raise ConfigError(f"keep_ratios must be in [0, 1], got {self.keep_ratios}")


def _mask(names: Sequence[str], L: int, visible: Mapping[str, slice | list[int]]) -> Mask:
    out = {}
    for name in names:
        m = np.zeros(L, dtype=bool)
        if name in visible:
            m[visible[name]] = True
        out[name] = m
    return out


def _check_history(L: int, history: int) -> None:
    if not 0 <= history <= L - 1:
        raise ConfigError(f"history must be in [0, {L - 1}] for segment length {L}, got {history}")


# -- deterministic inference masks -----------------------------------------------------------
def behavior_cloning(names: Sequence[str], L: int, history: int = 0) -> Mask:
    """States up to the current slot and past actions visible; returns masked."""
    _check_history(L, history)
    return _mask(names, L, {"states": slice(0, history + 1), "actions": slice(0, history)})


def return_conditioned(names: Sequence[str], L: int, history: int = 0) -> Mask:
    """As behaviour cloning, plus the return target visible in every slot (reference 4.4)."""
    _check_history(L, history)
    visible = {"states": slice(0, history + 1), "actions": slice(0, history)}
    visible["returns"] = slice(0, L)
    return _mask(names, L, visible)


def inverse_dynamics(
    names: Sequence[str], L: int, history: int = 0, future_states: int | None = None
) -> Mask:
    """Current state plus ``future_states`` desired next states visible; actions to predict.

    ``future_states`` defaults to every remaining slot; ``history=0`` with the default is
    the reference's inverse-dynamics mask (all states visible, actions and returns masked).
    """
    _check_history(L, history)
    future = L - 1 - history if future_states is None else future_states
    if not 1 <= future <= L - 1 - history:
        raise ConfigError(
            f"future_states must be in [1, {L - 1 - history}] with history {history}, got {future}"
        )
    visible = {"states": slice(0, history + 1 + future), "actions": slice(0, history)}
    return _mask(names, L, visible)


def forward_dynamics(
    names: Sequence[str], L: int, history: int = 0, planned_actions: int | None = None
) -> Mask:
    """States up to the current slot and the actions to apply visible; next states predicted.

    ``planned_actions`` counts actions from the current slot on (default: every remaining slot).
    """
    _check_history(L, history)
    planned = L - history if planned_actions is None else planned_actions
    if not 1 <= planned <= L - history:
        raise ConfigError(f"planned_actions must be in [1, {L - history}], got {planned}")
    return _mask(
        names, L, {"states": slice(0, history + 1), "actions": slice(0, history + planned)}
    )


def goal(names: Sequence[str], L: int, history: int = 0) -> Mask:
    """History, current state and the goal state in the last slot visible; actions predicted."""
    _check_history(L, history)
    if history >= L - 1:
        raise ConfigError(f"goal needs a free slot before the goal: history < {L - 1}")
    states = [*range(history + 1), L - 1]
    return _mask(names, L, {"states": states, "actions": slice(0, history)})


def two_stage(names: Sequence[str], L: int, history: int = 0) -> tuple[Mask, Mask]:
    """Two-stage return-conditioned sampler (reference 4.4, ``sample_action_bc_two_stage``).

    Stage 1 sees the current state and the return target in the current slot only (with
    ``history=0``: s_0 and R_0, the paper's sampler exactly; with history also the past pairs
    and their return slots, which hold the target as in :func:`return_conditioned`), and
    predicts every future state and return. Stage 2 sees every state and every return (future
    slots filled with stage 1's predictions) plus the past actions, and predicts the actions.
    """
    _check_history(L, history)
    if history > L - 2:
        raise ConfigError(f"two_stage needs a future slot: history <= {L - 2}, got {history}")
    present = slice(0, history + 1)
    stage1 = _mask(names, L, {"states": present, "returns": present, "actions": slice(0, history)})
    everything = slice(0, L)
    stage2 = _mask(
        names, L, {"states": everything, "returns": everything, "actions": slice(0, history)}
    )
    return stage1, stage2


#: The masks of each inference mode (``mtm_robot_client.modes.MODES``), by its name: one per
#: forward. Called ``(names, L, history, **rows)``, ``rows`` the count of each row array the
#: request filled, by its name (``future_states=f``, ``planned_actions=p``).
MODE_MASKS: dict[str, Callable[..., Mask | tuple[Mask, ...]]] = {
    "behavior_cloning": behavior_cloning,
    "return_conditioned": return_conditioned,
    "inverse_dynamics": inverse_dynamics,
    "forward_dynamics": forward_dynamics,
    "goal": goal,
    "two_stage": two_stage,
}


def mode_masks(mode: str, names: Sequence[str], L: int, history: int, **rows: int) -> list[Mask]:
    """The masks of ``mode``'s forwards, in order (one for every mode but ``two_stage``)."""
    if mode not in MODE_MASKS:
        raise ConfigError(f"unknown mode '{mode}'; known: {list(MODE_MASKS)}")
    masks = MODE_MASKS[mode](names, L, history, **rows)
    return list(masks) if isinstance(masks, tuple) else [masks]


def inference_mask(mode: str, names: Sequence[str], L: int, history: int) -> Mask:
    """The mask a single-forward mode uses (``two_stage`` has two: see :func:`two_stage`)."""
    masks = mode_masks(mode, names, L, history)
    if len(masks) != 1:
        raise ConfigError(f"mode '{mode}' takes {len(masks)} forwards: use mode_masks")
    return masks[0]


# -- random training masks -------------------------------------------------------------------
def _keep_mask(L: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    m = np.zeros(L, dtype=bool)
    m[: int(np.floor(L * ratio))] = True
    return rng.permutation(m)


def random(
    names: Sequence[str], L: int, rng: np.random.Generator, keep_ratios: Sequence[float]
) -> Mask:
    """Per modality, floor(L*r) random visible steps, r drawn from ``keep_ratios``."""
    return {n: _keep_mask(L, float(rng.choice(keep_ratios)), rng) for n in names}


def random_autoregressive(
    names: Sequence[str],
    L: int,
    rng: np.random.Generator,
    keep_ratios: Sequence[float],
    modality_weights: Mapping[str, float],
) -> Mask:
    """Random keep-masks, then everything at or after a random cut point is masked.

    The cut is (pos, modality) in the time-major order of ``AUTOREGRESSIVE_ORDER``, the
    modality drawn by ``modality_weights``; so the last element of the segment is always
    masked (reference 4.3). Modalities outside that order are placed right after ``states``.
    """
    order = _autoregressive_order(names)
    modalities = list(modality_weights)
    weights = np.array([modality_weights[m] for m in modalities], dtype=float)
    modality = modalities[int(rng.choice(len(modalities), p=weights / weights.sum()))]
    pos = int(rng.integers(0, L))
    cut_rank = order.index(modality) if modality in order else len(order)
    mask = random(names, L, rng, keep_ratios)
    for name in names:
        start = pos + 1 if order.index(name) < cut_rank else pos
        mask[name][start:] = False
    return mask


def _autoregressive_order(names: Sequence[str]) -> list[str]:
    others = [n for n in names if n not in AUTOREGRESSIVE_ORDER]
    return [AUTOREGRESSIVE_ORDER[0], *others, *AUTOREGRESSIVE_ORDER[1:]]


def sample_training_mask(
    names: Sequence[str], L: int, config: MaskConfig, rng: np.random.Generator
) -> tuple[str, Mask]:
    """Draw a pattern by weight, then one mask from it. Returns (pattern, mask)."""
    patterns = list(config.patterns)
    weights = np.array([config.patterns[p] for p in patterns], dtype=float)
    pattern = patterns[int(rng.choice(len(patterns), p=weights / weights.sum()))]
    if pattern == "random":
        return pattern, random(names, L, rng, config.keep_ratios)
    if pattern == "random_autoregressive":
        return pattern, random_autoregressive(
            names, L, rng, config.keep_ratios, config.modality_weights
        )
    # a mode's pattern with a request array keeps a slot for it: history < L-1
    free_slot = 1 if MODES[pattern].arrays else 0
    if free_slot and L < 2:
        raise ConfigError(f"the {pattern} pattern needs segment_length >= 2, got {L}")
    history = int(rng.integers(0, L - free_slot))
    if pattern == "inverse_dynamics":  # a random count of desired states, too
        return pattern, inverse_dynamics(names, L, history, int(rng.integers(1, L - history)))
    return pattern, inference_mask(pattern, names, L, history)


def sample_batch_mask(
    group: str, names: Sequence[str], L: int, config: MaskConfig, rng: np.random.Generator
) -> Mask:
    """The one training mask of a batch drawn from ``group`` (reference 5.3).

    ``labelled`` batches take :func:`sample_training_mask` as drawn; action-free batches get
    their actions forced masked and redraw until some state is masked.
    """
    while True:
        _, mask = sample_training_mask(names, L, config, rng)
        if group == "labelled":
            return mask
        mask["actions"][:] = False  # action-free data: actions are a forced mask
        if not mask["states"].all():  # reference 5.3: redraw until some state is masked
            return mask


def stack_masks(masks: Sequence[Mask]) -> Mask:
    """Per-sample masks -> one batch mask: name -> (B, L)."""
    return {name: np.stack([m[name] for m in masks]) for name in masks[0]}
