"""The inference modes an ``act`` request can ask for: what each request carries.

One description per mode (``docs/protocol.md`` section 4), torch-free, so a client, the node's
request checks and a controller can all look a mode up here instead of re-spelling it. Masks
and context layout are built on the node from the mode (``mtm_robot.model.masks``).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Arrays every mode accepts: the current state (required) and an optional history pair.
STATE = "state"
HISTORY_ARRAYS = ("history_states", "history_actions")
#: ``return_target_units`` a request may name (``metadata.return_target.units`` says which a
#: model converts): its own units, a fraction of the training range, a whole episode's return.
RETURN_UNITS = ("model", "normalized", "episode_return")
#: The mode of a request that names none.
DEFAULT_MODE = "return_conditioned"


@dataclass(frozen=True)
class Mode:
    """One inference mode, as a request sees it."""

    name: str
    #: arrays this mode requires beyond ``state`` (the history pair is always optional)
    arrays: tuple[str, ...] = ()
    #: a ``return_target`` is required (and refused by every other mode)
    needs_return_target: bool = False
    #: the mode reads a future slot, so history keeps at most L-2 rows (else L-1)
    needs_future_slot: bool = False
    #: where the answer is read in the reply
    answer: str = "action"
    #: one line on what it is for
    summary: str = ""

    @property
    def allowed_arrays(self) -> tuple[str, ...]:
        """Every array a request of this mode may carry (any other is ``bad_request``)."""
        return (STATE, *HISTORY_ARRAYS, *self.arrays)


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
            arrays=("future_states",),
            needs_future_slot=True,
            summary="the action that takes the current state to future_states[0]",
        ),
        Mode(
            "forward_dynamics",
            arrays=("planned_actions",),
            answer="next_states",
            summary="the states reached by applying planned_actions",
        ),
        Mode(
            "goal",
            arrays=("goal_state",),
            needs_future_slot=True,
            summary="the action toward goal_state at the end of the segment",
        ),
        Mode(
            "two_stage",
            needs_return_target=True,
            needs_future_slot=True,
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
