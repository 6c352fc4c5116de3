"""The command-line entry points: one module per command (``mtm_robot.cli.sim_control`` is
``mtm-sim-control``, and ``python launch/sim_control.py`` from a checkout), and here what they
all share: the error exit, output-folder checks and run directories. How a command's flags come
from the config dataclasses: :mod:`mtm_robot.cli.settings`.

Exit status of every launcher: 0 done, 1 the job ran and found a problem it reports (e.g. a
failed I/O map check), 2 bad input: a message on stderr, ``error: ...`` on one line, naming the
bad value and what to do, and no traceback. 130 after Ctrl-C.

Bad input is what the package raises on purpose (:class:`~mtm_robot.errors.MTMRobotError`:
config, data, checkpoint and spec errors) and operating-system errors about a named path (a
file that does not exist, a folder where a file goes, no permission, a full disk). Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from mtm_robot.errors import ConfigError, MTMRobotError

#: The exit status of a run stopped by bad input.
BAD_INPUT = 2


def error_line(exc: BaseException) -> str | None:
    """The one-line message for an error that is bad input, or None for a bug."""
    if isinstance(exc, MTMRobotError):
        message = str(exc)
    elif isinstance(exc, OSError) and exc.filename is not None:
        message = f"{exc.filename}: {exc.strerror or exc}"
        if exc.filename2 is not None:
            message = f"{exc.filename} -> {exc.filename2}: {exc.strerror or exc}"
    else:
        return None
    return "error: " + " ".join(message.split())  # one line, whatever the message held


def run(main: Callable[[], int | None]) -> NoReturn:
    """``sys.exit(main())``; bad input prints ``error: ...`` and exits 2 (see the module
    docstring), Ctrl-C exits 130."""
    try:
        code = main()
    except KeyboardInterrupt:
        sys.exit(130)
    except (MTMRobotError, OSError) as exc:
        line = error_line(exc)
        if line is None:
            raise
        print(line, file=sys.stderr)
        sys.exit(BAD_INPUT)
    sys.exit(code or 0)


def check_output_dir(path: str | Path | None, flag: str) -> None:
    """Fail before any work when ``path`` (an output folder given as ``flag``) cannot be one:
    an existing file, or a folder whose nearest existing parent is a file."""
    if path is None or str(path) == "":
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(
            f"{flag} {path} is an existing file, not a folder; pass a folder (new or existing)"
        )
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{flag} {path}: {parent} is a file, not a folder")
            break


@contextlib.contextmanager
def run_directory(path: Path, scratch: Sequence[str] = ()) -> Iterator[Path]:
    """Create run directory ``path`` (and missing parents) for the body. When the body fails
    (an error or Ctrl-C) before writing anything there, the folders it created are removed
    again, so a run that fails before starting leaves no empty run directory. ``scratch``:
    files of a failed start removed with them (e.g. ``node.log``) unless the error names one."""
    created = [p for p in (path, *path.parents) if not p.exists()]  # deepest first
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException as exc:
        for name in scratch:
            if str(path / name) not in str(exc):
                (path / name).unlink(missing_ok=True)
        for folder in created:
            with contextlib.suppress(OSError):  # a folder that holds anything stays
                folder.rmdir()
        raise
