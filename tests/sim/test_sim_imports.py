"""Importing the simulator layer stays light: no torch, no suite until a task is built."""

from __future__ import annotations

import subprocess
import sys


def test_sim_and_collection_import_without_torch_or_dm_control() -> None:
    code = (
        "import sys, sim, sim.datasets, sim.render, sim.experts.policy\n"
        "heavy = [m for m in ('torch', 'dm_control', 'gymnasium') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "", f"heavy modules imported: {result.stdout.strip()}"
