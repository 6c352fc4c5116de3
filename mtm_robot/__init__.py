"""mtm-robot: Masked Trajectory Models on a real control loop."""

from __future__ import annotations

__version__ = "0.1.0"
