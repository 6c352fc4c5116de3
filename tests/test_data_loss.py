"""The four ways issue 13 found to lose data, each with real processes or a real filesystem.

What the project promises is written in ``docs/reliability.md``; these tests hold it to that.
"""

from __future__ import annotations

import hashlib
import json
import os
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
def tmpfs_1mb(tmp_path):
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


def _assert_recording_failed_cleanly(result, store: Path, run: Path, episodes: int) -> None:
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


# -- 3. replacing `latest` is atomic; resume falls back to the newest intact step_N ----------
def _tiny_run(steps: int, every: int):
    from tests.training.test_train import _config

    config = _config(steps)
    config.model.width = 32
    config.batch_size = 16
    config.checkpoint_every = every
    config.eval_every = 1000
    return config


def _steps_on_disk(checkpoints: Path) -> dict[str, str]:
    return {p.name: str(snapshot(p)) for p in checkpoints.glob("step_*")}


def test_a_kill_while_latest_is_replaced_resumes_from_the_newest_step(tmp_path):
    import shutil

    from mtm_robot.training.train import Trainer

    episodes = linear_episodes(6, length=20)
    Trainer(_tiny_run(20, 10), episodes, tmp_path).run(progress=False)
    checkpoints = tmp_path / "checkpoints"
    shutil.rmtree(checkpoints / "latest")  # the in-between state of the old Trainer.save
    before = _steps_on_disk(checkpoints)
    resumed = Trainer(_tiny_run(30, 10), episodes, tmp_path)
    assert resumed.step == 20  # not silently from 0
    resumed.run(progress=False)
    after = _steps_on_disk(checkpoints)
    assert {k: after[k] for k in before} == before  # step_10, step_20 never overwritten
    assert sorted(after) == ["step_10", "step_20", "step_30"]


def test_resume_skips_corrupt_checkpoints_and_never_restarts_silently(tmp_path):
    from mtm_robot.errors import CheckpointError
    from mtm_robot.training.train import Trainer

    episodes = linear_episodes(6, length=20)
    Trainer(_tiny_run(20, 10), episodes, tmp_path).run(progress=False)
    checkpoints = tmp_path / "checkpoints"
    for name in ("latest", "step_20"):  # truncated weights (a kill mid-write, a bad disk)
        weights = checkpoints / name / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    assert Trainer(_tiny_run(30, 10), episodes, tmp_path).step == 10
    trainer = checkpoints / "step_10" / "trainer.safetensors"
    trainer.write_bytes(trainer.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        Trainer(_tiny_run(30, 10), episodes, tmp_path)


class _Killed(BaseException):
    """Stands for a kill: nothing after it runs."""


def _kill_at_rename(monkeypatch: pytest.MonkeyPatch, point: int) -> None:
    """The ``point``-th ``os.rename``/``os.replace`` from now on (0 = the first) is a kill;
    ``shutil.rmtree`` does nothing, as a kill cleans nothing up."""
    import shutil

    calls = {"n": 0}
    for name in ("rename", "replace"):
        real = getattr(os, name)

        def counted(*args, _real=real, **kw):
            calls["n"] += 1
            if calls["n"] > point:
                raise _Killed
            return _real(*args, **kw)

        monkeypatch.setattr(os, name, counted)
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: None)


@pytest.mark.slow
def test_a_kill_at_any_point_of_save_leaves_a_resumable_run(tmp_path, monkeypatch):
    from mtm_robot.training.train import Trainer

    episodes = linear_episodes(6, length=20)
    point = 0
    while True:  # kill at the 1st, 2nd, ... rename of the second save, until it completes
        run = tmp_path / f"kill_{point}"
        Trainer(_tiny_run(10, 10), episodes, run).run(progress=False)
        trainer = Trainer(_tiny_run(20, 10), episodes, run)
        _kill_at_rename(monkeypatch, point)
        try:
            trainer.run(progress=False)
            finished = True
        except _Killed:
            finished = False
        monkeypatch.undo()
        resumed = Trainer(_tiny_run(20, 10), episodes, run)
        assert resumed.step in (10, 20), (point, resumed.step)
        assert resumed.step == 20 or not finished
        if finished:
            break
        point += 1
    assert point >= 3  # the kill landed between every rename of a save


# -- 4. finetune checkpoints on a cadence; a killed one resumes where it was ------------------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_killed_finetune_resumes_from_its_last_cadence_checkpoint(tmp_path):
    import signal
    import time

    from mtm_robot.training.checkpoint import newest_resumable, read_metadata
    from mtm_robot.training.train import Trainer

    Trainer(_tiny_run(10, 10), linear_episodes(6, length=20), tmp_path / "base").run(progress=False)
    for i, episode in enumerate(linear_episodes(4, length=20, seed=6)):
        save_episode(episode_file(tmp_path / "data", i), episode)
    out = tmp_path / "ft"

    def finetune(steps: int) -> list[str]:  # one thread: two crawl on a busy 2-core machine
        return [sys.executable, str(ROOT / "launch" / "finetune.py"),
                "--checkpoint", str(tmp_path / "base" / "checkpoints" / "latest"),
                "--data", str(tmp_path / "data"), "--out", str(out), "--steps", str(steps),
                "--eval-episodes", "0", "--no-progress",
                "--set", "threads=1"]  # fmt: skip

    metrics = out / "metrics.jsonl"

    def logged_steps() -> list[int]:
        if not metrics.is_file():
            return []
        return [json.loads(x)["step"] for x in metrics.read_text().splitlines() if x.strip()]

    log = tmp_path / "killed_finetune.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen(finetune(100_000), cwd=ROOT, stdout=handle, stderr=handle)
    deadline = time.monotonic() + 200
    while not any(step > 500 for step in logged_steps()):  # past the first cadence checkpoint
        alive = proc.poll() is None and time.monotonic() < deadline
        assert alive, f"no progress past step 500: {log.read_text()[-3000:]}"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    checkpoints = out / "checkpoints"
    resumable = newest_resumable(checkpoints)
    assert resumable is not None, "the default cadence wrote no checkpoint in 500 steps"
    step = read_metadata(resumable)["step"]
    assert step >= 500 and any(s > step for s in logged_steps())  # rows to be logged again
    (checkpoints / f"step_{step}" / ".model.safetensors.tmp").write_bytes(b"stray")
    (checkpoints / ".latest.tmp").mkdir(exist_ok=True)  # what an older save could leave
    result = subprocess.run(finetune(step + 100), cwd=ROOT, capture_output=True, text=True,
                            timeout=200)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed from step {step}" in result.stdout
    train_rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    train_steps = [r["step"] for r in train_rows if "loss" in r]
    assert train_steps == list(range(50, step + 101, 50))  # no duplicates, no gap
    assert sorted(p.name for p in (checkpoints / "latest").iterdir()) == [
        "checkpoint.yaml", "model.safetensors", "trainer.safetensors",
    ]  # fmt: skip
    assert read_metadata(checkpoints / "latest")["step"] == step + 100
