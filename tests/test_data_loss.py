"""The four ways issue 13 found to lose data, each with real processes or a real filesystem.

What the project promises is written in ``docs/reliability.md``; these tests hold it to that.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from mtm_robot.data.episodes import episode_file, save_episode
from tests.synthetic import linear_episodes

ROOT = Path(__file__).resolve().parents[1]


def snapshot(directory: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``directory`` (names and bytes)."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _launch(script: str, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "launch" / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd=ROOT,
    )


# -- 1. collect --overwrite deletes nothing until the new data is ready ---------------------
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_collect_overwrite_that_fails_leaves_the_store_byte_identical(tmp_path):
    store = tmp_path / "store"
    for i, episode in enumerate(linear_episodes(3, length=10)):
        save_episode(episode_file(store, i), episode)
    (store / "summary.json").write_text('{"episodes": 3}\n')
    (store / "notes.txt").write_text("the user's own file\n")
    before = snapshot(store)
    result = _launch(
        "collect.py", "--recipe", "expert", "--episodes", "1", "--out", str(store),
        "--overwrite", "--policy-dir", "/nonexistent",
    )  # fmt: skip
    assert result.returncode != 0, result.stdout + result.stderr
    assert snapshot(store) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]  # no temp dir behind
