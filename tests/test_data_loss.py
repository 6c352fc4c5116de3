"""The four ways issue 13 found to lose data, each with real processes or a real filesystem.

What the project promises is written in ``docs/reliability.md``; these tests hold it to that.
"""

from __future__ import annotations

import hashlib
import json
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


# -- 2. a full disk while recording: a clear error, nothing complete lost, no temp file -----
FULL_DISK_AFTER = r"""
import errno, os, runpy, sys
left = int(sys.argv[1])
store = os.path.realpath(sys.argv[2]) + os.sep
real_write = os.write

def write(fd, data):  # ENOSPC once `left` bytes went to files under the store
    global left
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        target = ""
    if not target.startswith(store):
        return real_write(fd, data)
    if left <= 0:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    n = real_write(fd, bytes(data)[:left])
    left -= n
    return n

os.write = write
sys.argv = sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture
def tmpfs_1mb(tmp_path):  # type: ignore[no-untyped-def]
    """A real 1 MiB tmpfs (needs root, as the issue's reproduction did)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def _assert_recording_failed_cleanly(result, store: Path, run: Path, episodes: int) -> None:  # type: ignore[no-untyped-def]
    from mtm_robot.data.episodes import episode_paths, load_episode

    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Traceback" not in output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], result.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    assert "No space left on device" in summary["recording_error"]
    assert not [p.name for p in store.iterdir() if p.name.startswith(".")]  # no temp file
    complete = [load_episode(p) for p in episode_paths(store)]
    assert complete, "the first episode fits on the disk and must be intact"
    assert all(e.meta["complete"] and len(e) == 500 for e in complete)
    for path in store.glob("episode_*.part_*.npz"):
        load_episode(path)  # every chunk left is readable
    assert len(complete) < episodes


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("disk", ["injected_enospc", "tmpfs"])
def test_sim_control_record_on_a_full_disk_fails_clearly_and_keeps_complete_episodes(
    disk, tmp_path, request
):
    from tests.controllers.test_sim_control import _checkpoint

    checkpoint = _checkpoint(tmp_path / "walker")
    store = (request.getfixturevalue("tmpfs_1mb") if disk == "tmpfs" else tmp_path) / "rec"
    args = [str(ROOT / "launch" / "sim_control.py"), "--task", "walker",
            "--checkpoint", str(checkpoint), "--episodes", "4", "--lockstep",
            "--set", "controller.max_steps=500", "--out", str(tmp_path / "run"),
            "--record", str(store)]  # fmt: skip
    if disk == "tmpfs":
        cmd = [sys.executable, *args]
    else:
        store.mkdir()
        cmd = [sys.executable, "-c", FULL_DISK_AFTER, str(1 << 20), str(store), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=200, cwd=ROOT)
    _assert_recording_failed_cleanly(result, store, tmp_path / "run", episodes=4)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("disk", ["injected_enospc", "tmpfs"])
def test_record_demos_on_a_full_disk_lists_only_written_episodes(disk, tmp_path, request):
    from mtm_robot.data.episodes import episode_paths, load_episode

    store = (request.getfixturevalue("tmpfs_1mb") if disk == "tmpfs" else tmp_path) / "demos"
    args = [str(ROOT / "launch" / "record_demos.py"), "--source", "expert", "--out", str(store),
            "--episodes", "3"]  # fmt: skip
    if disk == "tmpfs":
        cmd = [sys.executable, *args]
    else:
        store.mkdir()
        cmd = [sys.executable, "-c", FULL_DISK_AFTER, str(1_000_000), str(store), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=100, cwd=ROOT)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "Traceback" not in output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], result.stderr[-3000:]
    listed = [line.split(":")[0] for line in result.stdout.splitlines() if line.startswith("ep")]
    listed = [name for name in listed if name.endswith(".npz")]
    assert listed, result.stdout
    for name in listed:  # an episode listed as written is a complete episode file
        assert load_episode(store / name).meta["complete"] is True, name
    assert len(episode_paths(store)) < 3
    summary = store / "record_summary.json"
    if summary.exists():  # never a 0-byte or half-written summary
        rows = json.loads(summary.read_text())
        assert all((store / row["file"]).is_file() for row in rows if row["file"])
    assert not [p.name for p in store.iterdir() if p.name.startswith(".")]  # no temp file
