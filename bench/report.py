"""Moved to :mod:`mtm_robot.report.page`; kept for scripts that still import it from here."""

from mtm_robot.report.page import (  # noqa: F401
    BENCHMARKS,
    FIGURES,
    cell,
    hardware,
    mean_std,
    percentiles_ms,
    write_section,
)
