"""The benchmarks page: each study and each bench script owns one marked section of it.

The page is ``docs/benchmarks.md`` of the checkout the command runs in (the current
directory), its plots in ``docs/figures/`` and the headline table in ``README.md`` beside
``docs/``; ``MTM_DOCS_DIR`` points elsewhere (an installed package has no docs of its own).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtm_robot.hardware import describe

DOCS = Path(os.environ.get("MTM_DOCS_DIR", "docs"))
BENCHMARKS = DOCS / "benchmarks.md"
FIGURES = DOCS / "figures"  # plots the sections link to
README = DOCS.parent / "README.md"  # its headline table of the paper comparisons
_HEADER = """# Benchmarks

Every figure below was measured by the script named in its section, with a baseline measured
in the same run on the same machine. Rerun a section with the command shown under it. The
evaluation report's commands `python bench/run_all.py` and `python bench/representation.py` are
`python -m mtm_robot.report` and `python -m mtm_robot.report.representation` (same arguments;
the bench files are shims over the package).
"""


def hardware() -> str:
    """One line naming the machine (``mtm_robot.hardware.describe``)."""
    return describe()


def percentiles_ms(samples_s: list[float] | np.ndarray) -> tuple[float, float]:
    """(p50, p99) in milliseconds of durations given in seconds."""
    arr = np.asarray(samples_s) * 1000.0
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def mean_std(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and (population) standard deviation; NaN for no values."""
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return math.nan, math.nan
    return float(a.mean()), float(a.std())


def cell(values: Sequence[float] | np.ndarray, digits: int = 1) -> str:
    """A table cell ``mean ± std`` (``n/a`` for no values, the value alone for one)."""
    if len(values) == 0:
        return "n/a"
    m, s = mean_std(values)
    if len(values) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def write_section(name: str, markdown: str, path: Path = BENCHMARKS) -> None:
    """Replace (or append) the section ``name`` of the benchmarks page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else _HEADER
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
