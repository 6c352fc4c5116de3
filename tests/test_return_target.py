"""The default return-target rule (mtm_robot/return_target.py), the one home every caller uses."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from mtm_robot.return_target import default_return_target

META = {"return_stats": {"return_min": 0.2, "return_max": 0.8, "return_mean": 0.5}}


def test_the_top_of_the_training_range_unless_a_fraction_or_a_target_is_given():
    assert default_return_target(META) == pytest.approx(0.8)
    assert default_return_target(META, 0.5) == pytest.approx(0.5)
    assert default_return_target(META, 1.5) == pytest.approx(1.1)
    assert default_return_target(META, 0.5, target=3.0) == 3.0
    assert default_return_target({}) is None
    assert default_return_target({"return_stats": {"return_min": 1.0}}) is None
    with pytest.raises(ValueError, match="fraction must be a finite number, got nan"):
        default_return_target(META, math.nan)


def test_the_rule_imports_no_torch():
    code = "import sys, mtm_robot.return_target; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
