"""Exceptions raised by mtm-robot; each message names the bad value and what was expected."""

from __future__ import annotations

# The base class lives in the installable client, so the client's errors (NodeError,
# NodeTimeoutError, ProtocolError) are MTMRobotErrors too: bad input for every launcher.
from mtm_robot_client.errors import MTMRobotError

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MTMRobotError",
    "SpecMismatchError",
    "TrainingError",
    "UnknownTaskError",
]


class ConfigError(MTMRobotError, ValueError):
    """A configuration value or key is invalid."""


class DataError(MTMRobotError, ValueError):
    """A dataset, episode file or array does not match what is expected."""


class CheckpointError(MTMRobotError, ValueError):
    """A checkpoint is missing, truncated, tampered with, or does not match the data."""


class SpecMismatchError(MTMRobotError, ValueError):
    """Two specs (model vs task, request vs model) disagree."""


class UnknownTaskError(MTMRobotError, KeyError):
    """A task name that is not registered (still a ``KeyError``, as a registry lookup)."""

    def __str__(self) -> str:  # KeyError quotes its message; this one is a sentence
        return str(self.args[0]) if self.args else ""


class TrainingError(MTMRobotError, RuntimeError):
    """A training run cannot go on (e.g. its loss became non-finite)."""
