"""Simulator adapters, the task registry and data-generating experts.

>>> from sim import make
>>> env = make("walker")          # dm_control walker-walk
>>> obs, info = env.reset(seed=0)
"""

from __future__ import annotations

from sim.env import SimEnv, validate_action
from sim.registry import (
    ReferenceReturns,
    TaskSpec,
    known_tasks,
    make,
    normalized_score,
    resolve,
    task_spec,
)

__all__ = [
    "ReferenceReturns",
    "SimEnv",
    "TaskSpec",
    "known_tasks",
    "make",
    "normalized_score",
    "resolve",
    "task_spec",
    "validate_action",
]
