"""The inference modes: the one description of each, that every layer looks up.

A mode says what an ``act`` request carries (its arrays, whether it needs a return target),
where the node lays those inputs out in the model's segment, how many forwards it takes, and
where its answer is read. Torch-free and numpy-free, so the client, the node's request checks,
the predictor, the controller and calibration all read the same table
(``docs/protocol.md`` section 4; ``docs/architecture.md``, "Inference modes", says how to add
one). The mask of each mode is built by the function of the same name in
``mtm_robot.model.masks`` (``MODE_MASKS``), which the model side keys by these names.

Slots of a segment of length ``L``: ``0..k-1`` hold the history (``k`` past pairs), slot ``k``
the current state, later slots the future. A *placement* names a range of them (:func:`slots`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Placements: where an input goes in the segment, or where an output is read.
CURRENT = "current"  #: slot k
AFTER_CURRENT = "after_current"  #: slots k+1 .. L-1 (rows cut to fit)
FROM_CURRENT = "from_current"  #: slots k .. L-1 (rows cut to fit)
LAST_SLOT = "last_slot"  #: slot L-1
EVERY_SLOT = "every_slot"  #: slots 0 .. L-1
PLACEMENTS = (CURRENT, AFTER_CURRENT, FROM_CURRENT, LAST_SLOT, EVERY_SLOT)


def slots(placement: str, L: int, k: int) -> slice:
    """The segment slots ``placement`` covers, with ``k`` history rows in a segment of ``L``."""
    if placement == CURRENT:
        return slice(k, k + 1)
    if placement == AFTER_CURRENT:
        return slice(k + 1, L)
    if placement == FROM_CURRENT:
        return slice(k, L)
    if placement == LAST_SLOT:
        return slice(L - 1, L)
    if placement == EVERY_SLOT:
        return slice(0, L)
    raise ValueError(f"unknown placement {placement!r}; placements: {list(PLACEMENTS)}")


@dataclass(frozen=True)
class Array:
    """One array a request may carry: the modality it holds and its shape."""

    name: str
    #: the modality (``states`` or ``actions``) whose units and dimension it has
    modality: str
    #: rows ``(n, dim)`` with ``min_rows <= n``; else one vector ``(dim,)`` (or ``(1, dim)``)
    rows: bool
    min_rows: int = 1


#: Every request array, by name (``docs/protocol.md``, the array table of ``act``).
ARRAYS: dict[str, Array] = {
    array.name: array
    for array in (
        Array("state", "states", rows=False),
        Array("history_states", "states", rows=True, min_rows=0),
        Array("history_actions", "actions", rows=True, min_rows=0),
        Array("future_states", "states", rows=True),
        Array("goal_state", "states", rows=False),
        Array("planned_actions", "actions", rows=True),
    )
}
#: Arrays every mode accepts: the current state (required) and an optional history pair.
STATE = "state"
HISTORY_ARRAYS = ("history_states", "history_actions")
#: The arrays of an ``ok`` act reply: (modality, placement) of the model output each holds.
REPLY_ARRAYS: dict[str, tuple[str, str]] = {
    "action": ("actions", CURRENT),
    "action_chunk": ("actions", FROM_CURRENT),
    "next_states": ("states", AFTER_CURRENT),
}
#: ``return_target_units`` a request may name (``metadata.return_target.units`` says which a
#: model converts): its own units, a fraction of the training range, a whole episode's return.
RETURN_UNITS = ("model", "normalized", "episode_return")
#: The mode of a request that names none.
DEFAULT_MODE = "return_conditioned"


@dataclass(frozen=True)
class Mode:
    """One inference mode: its request, its context layout, its forwards and its answer."""

    name: str
    #: arrays this mode requires beyond ``state`` (the history pair is always optional), each
    #: with the placement of its rows in the segment
    layout: tuple[tuple[str, str], ...] = ()
    #: a ``return_target`` is required (and refused by every other mode); it fills every
    #: ``returns`` slot, and the model must have a ``returns`` modality
    needs_return_target: bool = False
    #: the mode needs a slot after the current one, so history keeps at most L-2 rows (else
    #: L-1) and the model needs ``segment_length >= 2``
    needs_future_slot: bool = False
    #: forwards per request (``two_stage``: 2; each later forward sees the earlier one's
    #: predictions in the slots it newly unmasks)
    forwards: int = 1
    #: the reply array that holds the answer (``REPLY_ARRAYS``)
    answer: str = "action"
    #: where the action applied now comes from: the reply's ``action``, or the first row of a
    #: request array (``forward_dynamics`` applies its first planned action)
    applied: str = "action"
    #: one line on what it is for
    summary: str = ""

    def __post_init__(self) -> None:
        for array, placement in self.layout:
            if array not in ARRAYS or array == STATE or array in HISTORY_ARRAYS:
                raise ValueError(f"mode {self.name}: {array!r} is not a mode's request array")
            slots(placement, 2, 0)  # an unknown placement: ValueError
        if self.answer not in REPLY_ARRAYS:
            raise ValueError(f"mode {self.name}: answer {self.answer!r} is not a reply array")
        if self.applied != "action" and self.applied not in self.arrays:
            raise ValueError(f"mode {self.name}: applied {self.applied!r} is not in its request")

    @property
    def arrays(self) -> tuple[str, ...]:
        """The arrays this mode requires beyond ``state``."""
        return tuple(array for array, _ in self.layout)

    @property
    def allowed_arrays(self) -> tuple[str, ...]:
        """Every array a request of this mode may carry (any other is ``bad_request``)."""
        return (STATE, *HISTORY_ARRAYS, *self.arrays)

    def request_fields(
        self,
        history_states: Any = None,
        history_actions: Any = None,
        return_target: float | None = None,
        **arrays: Any,
    ) -> dict[str, Any]:
        """The keyword fields of this mode's ``act`` request beyond ``state`` (for
        ``NodeClient.submit``/``act``): the history pair when it has rows, the return target
        when the mode needs one, and exactly the mode's arrays. ``ValueError`` names a missing
        input or one the mode takes no part of (an array given as None counts as absent)."""
        fields: dict[str, Any] = {}
        if history_states is not None and len(history_states):
            fields["history_states"] = history_states
            fields["history_actions"] = history_actions
        if self.needs_return_target:
            if return_target is None:
                raise ValueError(f"mode {self.name} needs a return_target ({self.summary})")
            fields["return_target"] = return_target
        elif return_target is not None:
            raise ValueError(f"mode {self.name} takes no return_target")
        given = {name for name, value in arrays.items() if value is not None}
        if extra := sorted(given - set(self.arrays)):
            raise ValueError(f"mode {self.name} takes no {', '.join(extra)}")
        if missing := [name for name in self.arrays if name not in given]:
            raise ValueError(f"mode {self.name} needs {', '.join(missing)} ({self.summary})")
        fields.update((name, arrays[name]) for name in self.arrays)
        return fields


#: Every mode, by name, in the protocol's order.
MODES: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode("behavior_cloning", summary="the action a demonstrator would take now"),
        Mode(
            "return_conditioned",
            needs_return_target=True,
            summary="the action aiming for return_target (the default for control)",
        ),
        Mode(
            "inverse_dynamics",
            layout=(("future_states", AFTER_CURRENT),),
            needs_future_slot=True,
            summary="the action that takes the current state to future_states[0]",
        ),
        Mode(
            "forward_dynamics",
            layout=(("planned_actions", FROM_CURRENT),),
            answer="next_states",
            applied="planned_actions",
            summary="the states reached by applying planned_actions",
        ),
        Mode(
            "goal",
            layout=(("goal_state", LAST_SLOT),),
            needs_future_slot=True,
            summary="the action toward goal_state at the end of the segment",
        ),
        Mode(
            "two_stage",
            needs_return_target=True,
            needs_future_slot=True,
            forwards=2,
            summary="return-conditioned in two forwards (heteromodal models, reference 4.4)",
        ),
    )
}
#: Modes that need a return target (a model with a ``returns`` modality).
RETURN_MODES = tuple(name for name, mode in MODES.items() if mode.needs_return_target)


def get_mode(name: str) -> Mode:
    """The mode called ``name``; ``ValueError`` naming the modes there are otherwise."""
    try:
        return MODES[name]
    except KeyError:
        raise ValueError(f"unknown mode {name!r}; modes: {list(MODES)}") from None


def action_modes(supplied: Iterable[str] = ()) -> tuple[str, ...]:
    """The modes whose answer is the action to apply now and whose request needs no array
    beyond ``supplied`` (what a caller can fill in, e.g. ``future_states`` from a reference):
    the modes a closed loop can run with those inputs."""
    can = set(supplied)
    return tuple(
        name
        for name, mode in MODES.items()
        if mode.answer == "action" and mode.applied == "action" and set(mode.arrays) <= can
    )
