"""Every registered task as a gymnasium id: ``gymnasium.make("mtm_robot/<task>-v0")``.

Gymnasium 1.x has no plugin entry points (the ``gymnasium.envs`` entry-point group of 0.2x
was removed in 1.0), so ids reach gymnasium in one of its two supported ways, neither of which
imports the model or torch:

* the module prefix, no import needed: ``gymnasium.make("sim.gym_ids:mtm_robot/walker-walk-v0")``
  (gymnasium imports ``sim.gym_ids`` first, which registers every id);
* ``import sim.gym_ids`` (or ``gymnasium.register_envs(sim.gym_ids)``), then
  ``gymnasium.make("mtm_robot/walker-walk-v0")``.

A domain name works too (``mtm_robot/walker-v0`` is walker-walk). Each id builds the task
through the registry (:func:`sim.registry.make`) and wraps it in
:class:`sim.gymnasium_api.GymnasiumView`; keyword arguments of ``make`` go to the task's
factory, ``render_mode="rgb_array"`` to the view. The task keeps its own time limit
(``truncated`` after ``max_episode_steps``), so the ids register none.
"""

from __future__ import annotations

from typing import Any

import gymnasium

from mtm_robot.errors import UnknownTaskError
from sim.gymnasium_api import GymnasiumView
from sim.registry import known_tasks, make, resolve

NAMESPACE = "mtm_robot"


def gym_id(task: str) -> str:
    """The gymnasium id of a task: ``mtm_robot/<task>-v0``."""
    return f"{NAMESPACE}/{task}-v0"


def make_view(task: str, render_mode: str | None = None, **kwargs: Any) -> GymnasiumView:
    """The entry point of every id: the task as a ``gymnasium.Env``."""
    return GymnasiumView(make(task, **kwargs), render_mode=render_mode)


def register_all() -> list[str]:
    """Register an id for every task and domain alias (idempotent); returns the task ids."""
    names = {task: task for task in known_tasks()}
    for task in known_tasks():
        domain = task.split("-")[0]
        try:
            names.setdefault(domain, resolve(domain))
        except UnknownTaskError:  # a gymnasium id's prefix (Walker2d) is no domain
            continue
    for name, task in names.items():
        if gym_id(name) not in gymnasium.registry:
            gymnasium.register(
                id=gym_id(name), entry_point=f"{__name__}:make_view", kwargs={"task": task}
            )
    return [gym_id(task) for task in known_tasks()]


IDS = register_all()
