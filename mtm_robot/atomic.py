"""Crash-safe replacement of files and folders: the one home of tmp + fsync + rename.

A file is written beside its target (``.NAME.<pid>.<random>.tmp``), fsynced and renamed over it:
a reader sees the old bytes or the new ones, never a part. A failed write (a full disk, a kill
by exception) removes the temporary file and leaves the old one untouched.

A folder is built whole beside its target (``.NAME.tmp-XXXX``, see :func:`staged_dir`) and then
swapped in: the old folder is renamed aside (``.NAME.old-XXXX``), the new one renamed in, the
old one deleted. Nothing is deleted until the new folder is complete. A kill between the two
renames leaves the old folder aside; :func:`recover_dir` puts it back.

Torch-free: the recorder and the controller use it too.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def fsync_dir(directory: str | Path) -> None:
    """Make renames inside ``directory`` durable (best effort where folders can't be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a folder; the rename still happened
        pass
    finally:
        os.close(fd)


def write_bytes(path: str | Path, data: bytes | bytearray | memoryview) -> Path:
    """Replace ``path`` with ``data`` atomically; on any failure the old file is untouched and
    no temporary file is left behind."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        view = memoryview(data).cast("B")
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """:func:`write_bytes` of UTF-8 text."""
    return write_bytes(path, text.encode())


def _aside(target: Path, kind: str) -> Path:
    return target.with_name(f".{target.name}.{kind}-{uuid.uuid4().hex[:8]}")


def replace_dir(new: Path, target: Path) -> None:
    """Swap the complete folder ``new`` in as ``target`` (rename old aside, rename new in,
    delete old)."""
    old = None
    if target.exists() or target.is_symlink():
        if not target.is_dir():
            raise FileExistsError(f"{target} exists and is not a folder: nothing was replaced")
        old = _aside(target, "old")
        os.rename(target, old)
    try:
        os.rename(new, target)
    except BaseException:
        if old is not None:  # put the old folder back: the caller still has ``new``
            os.rename(old, target)
        raise
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def recover_dir(target: str | Path) -> bool:
    """Undo what a kill during :func:`replace_dir` or :func:`staged_dir` left beside ``target``:
    put a folder renamed aside back when ``target`` is missing, delete unfinished temporary
    folders and folders already replaced. Returns whether a folder was put back."""
    target = Path(target)
    if not target.parent.is_dir():
        return False
    restored = False
    for old in sorted(target.parent.glob(f".{target.name}.old-*")):
        if not target.exists():
            os.rename(old, target)
            log.warning("restored %s: a replacement of it was interrupted", target)
            restored = True
        else:
            shutil.rmtree(old, ignore_errors=True)
    for tmp in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    return restored


@contextmanager
def staged_dir(target: str | Path) -> Iterator[Path]:
    """Yield an empty folder beside ``target`` to build the new content in; on success it
    replaces ``target`` (:func:`replace_dir`), on any exception it is deleted and ``target``
    is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _aside(target, "tmp")
    staging.mkdir()  # the usual permissions (mkdtemp's are owner-only)
    try:
        yield staging
        replace_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
