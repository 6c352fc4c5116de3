"""Crash-safe files and folders: a failure or a kill never leaves a part or deletes the old."""

from __future__ import annotations

import errno
import os

import pytest

from mtm_robot import atomic


def full_disk_after(monkeypatch: pytest.MonkeyPatch, budget: int) -> None:
    """``os.write`` raises ENOSPC once ``budget`` bytes have been written (a full disk)."""
    real_write = os.write
    left = {"bytes": budget}

    def write(fd: int, data: bytes) -> int:
        if left["bytes"] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, bytes(data)[: left["bytes"]])
        left["bytes"] -= n
        return n

    monkeypatch.setattr(os, "write", write)


def test_a_full_disk_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    atomic.write_text(target, "old\n")
    full_disk_after(monkeypatch, 10)
    with pytest.raises(OSError) as raised:
        atomic.write_text(target, "new and much longer than ten bytes\n")
    assert raised.value.errno == errno.ENOSPC
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_failed_staged_folder_leaves_the_target_as_it_was(tmp_path):
    target = tmp_path / "store"
    target.mkdir()
    (target / "a").write_text("old")

    def fail_half_way() -> None:
        with atomic.staged_dir(target) as staging:
            (staging / "a").write_text("new")
            raise RuntimeError("the collection failed")

    with pytest.raises(RuntimeError):
        fail_half_way()
    assert (target / "a").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["store"]
    with atomic.staged_dir(target) as staging:
        (staging / "b").write_text("new")
    assert [p.name for p in target.iterdir()] == ["b"]
    assert [p.name for p in tmp_path.iterdir()] == ["store"]


def test_a_kill_between_the_two_renames_is_recovered(tmp_path):
    target = tmp_path / "latest"
    target.mkdir()
    (target / "a").write_text("old")
    os.rename(target, tmp_path / ".latest.old-1234")  # the state a kill leaves
    (tmp_path / ".latest.tmp-5678").mkdir()  # and an unfinished new one
    assert atomic.recover_dir(target)
    assert (target / "a").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["latest"]


def test_a_file_is_never_replaced_by_a_folder(tmp_path):
    target = tmp_path / "store"
    target.write_text("a user's file")
    with pytest.raises(FileExistsError), atomic.staged_dir(target):
        pass
    assert target.read_text() == "a user's file"
    assert [p.name for p in tmp_path.iterdir()] == ["store"]
