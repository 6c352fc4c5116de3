"""mtm-robot: Masked Trajectory Models on a real control loop.

The Python API (``docs/python-api.md``)::

    import mtm_robot

    policy = mtm_robot.load_policy("default")    # the shipped walker-walk model
    policy.reset()
    action = policy.act(observation)             # clipped to the task's action bounds

Exports (``__all__``), each imported on first use so that ``import mtm_robot`` stays cheap
(no torch until a model is loaded):

- ``load_policy(checkpoint="default", mode=..., ...)``: a :class:`Policy` running a checkpoint
  in this process; ``connect_policy(endpoint, mode=..., ...)``: the same ``Policy`` answered
  by an inference node (no torch in this process).
- ``Policy``: ``act(observation, ...)`` in any inference mode, keeping its own history;
  ``reset()`` per episode.
- ``load_checkpoint(path or "default")`` -> ``Checkpoint`` (model, normaliser, metadata);
  ``read_metadata(path)`` reads the metadata alone (no torch); ``DEFAULT_CHECKPOINT`` is the
  shipped model's directory.
- ``Predictor``, ``Context``, ``Prediction``: batched inference on explicit contexts (what the
  node runs).
- ``MODES``: the inference modes and what each request carries.
- ``default_return_target(metadata, fraction)``: the default return-target rule.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it (imported on first access).
_EXPORTS = {
    "load_policy": "mtm_robot.policy",
    "connect_policy": "mtm_robot.policy",
    "Policy": "mtm_robot.policy",
    "load_checkpoint": "mtm_robot.training.checkpoint",
    "Checkpoint": "mtm_robot.training.checkpoint",
    "read_metadata": "mtm_robot.checkpoint_meta",
    "DEFAULT_CHECKPOINT": "mtm_robot.checkpoint_meta",
    "Predictor": "mtm_robot.inference",
    "Context": "mtm_robot.inference",
    "Prediction": "mtm_robot.inference",
    "MODES": "mtm_robot_client.modes",
    "default_return_target": "mtm_robot.return_target",
}

__all__ = [
    "DEFAULT_CHECKPOINT",
    "MODES",
    "Checkpoint",
    "Context",
    "Policy",
    "Prediction",
    "Predictor",
    "__version__",
    "connect_policy",
    "default_return_target",
    "load_checkpoint",
    "load_policy",
    "read_metadata",
]

if TYPE_CHECKING:
    from mtm_robot.checkpoint_meta import DEFAULT_CHECKPOINT, read_metadata
    from mtm_robot.inference import Context, Prediction, Predictor
    from mtm_robot.policy import Policy, connect_policy, load_policy
    from mtm_robot.return_target import default_return_target
    from mtm_robot.training.checkpoint import Checkpoint, load_checkpoint
    from mtm_robot_client.modes import MODES


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:  # not an export: submodules (``mtm_robot.atomic``) import as usual
        raise AttributeError(f"module 'mtm_robot' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
