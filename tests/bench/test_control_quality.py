"""bench/control_quality.py scores any task's shipped model against its expert (issue 16)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_reacher_table_has_return_percentile_worst_and_the_expert() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "control_quality.py"), "--task", "reacher",
         "--episodes", "2", "--max-steps", "30", "--no-write"],
        capture_output=True, text=True, timeout=170, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "## Control quality, reacher-easy" in out and "mtm-reacher-easy@" in out
    assert "inverse_dynamics" not in out  # no demonstration ships for reacher
    rows = [line for line in out.splitlines() if line.startswith("| data-generating expert")
            or line.startswith("| MTM `mtm-reacher-easy")]  # fmt: skip
    assert len(rows) == 2
    number = r"-?\d+\.\d"
    for row in rows:  # return mean ± std | 5th pct | worst | score mean ± std | worst score
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        assert re.fullmatch(rf"{number} ± {number}", cells[0]) and re.fullmatch(number, cells[2])
        assert re.fullmatch(r"\d+/2", cells[5])  # falls: episodes scoring below 50, of 2
