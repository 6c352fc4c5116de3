"""The report is part of the package: it runs as ``python -m mtm_robot.report`` from any
directory, and nothing in the package edits ``sys.path`` or names a machine's folders."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import mtm_robot

PACKAGE = Path(mtm_robot.__file__).resolve().parent
ROOT = PACKAGE.parent


def _sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_sys_path_edits_and_no_machine_paths_in_the_package():
    offenders = []
    for path in _sources(PACKAGE):
        text = path.read_text()
        if re.search(r"sys\.path\.(insert|append)|sys\.path\s*=", text):
            offenders.append(f"{path.relative_to(ROOT)}: edits sys.path")
        if re.search(r"[\"'](/work|/home|/tmp)/", text):
            offenders.append(f"{path.relative_to(ROOT)}: a machine path")
    assert offenders == []


def test_bench_scripts_import_the_package_not_each_other():
    """Only the training benchmarks still need the checkout (bench/reference_mtm.py, and the
    profile reuses train_throughput's trainer set-up)."""
    edits = [p.name for p in _sources(ROOT / "bench") if "sys.path.insert" in p.read_text()]
    assert set(edits) <= {"train_throughput.py", "train_profile.py", "stacked_training.py"}, edits


def test_the_report_lists_its_jobs_from_any_directory(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mtm_robot.report", "--budget", "smoke", "--list"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "mtm_expert_seed0" in done.stdout and done.stdout.rstrip().endswith("jobs")
    assert list(tmp_path.iterdir()) == []  # listing writes nothing
