"""The launchers' one error exit: bad input is one line and exit 2, a bug keeps its traceback."""

from __future__ import annotations

import errno
import os

import pytest

from mtm_robot.cli import BAD_INPUT, check_output_dir, run
from mtm_robot.errors import ConfigError, DataError


def _exit(main, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        run(main)
    return int(info.value.code or 0), capsys.readouterr().err


def test_project_errors_and_path_errors_are_one_line_and_exit_2(capsys):
    def bad_data() -> int:
        raise DataError("episode.npz: states: expected numbers,\n  got <U1 values")

    def missing_file() -> int:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), "/no/such/file.yaml")

    code, err = _exit(bad_data, capsys)
    assert (code, err) == (
        BAD_INPUT,
        "error: episode.npz: states: expected numbers, got <U1 values\n",
    )
    code, err = _exit(missing_file, capsys)
    assert (code, err) == (BAD_INPUT, "error: /no/such/file.yaml: No such file or directory\n")
    assert _exit(lambda: 0, capsys)[0] == 0 and _exit(lambda: 1, capsys)[0] == 1


def test_a_bug_keeps_its_traceback():
    def buggy() -> int:
        raise ZeroDivisionError("a bug, not bad input")

    def os_error_without_a_path() -> int:
        raise OSError("no path: not known to be the user's input")

    with pytest.raises(ZeroDivisionError):
        run(buggy)
    with pytest.raises(OSError, match="no path"):
        run(os_error_without_a_path)


def test_output_folders_that_are_files_are_refused(tmp_path):
    existing = tmp_path / "a_file"
    existing.write_text("x")
    check_output_dir(None, "--out")
    check_output_dir(tmp_path / "new" / "folder", "--out")  # created later: fine
    check_output_dir(tmp_path, "--out")  # an existing folder: fine
    with pytest.raises(ConfigError, match=r"--record .*a_file is an existing file, not a folder"):
        check_output_dir(existing, "--record")
    with pytest.raises(ConfigError, match=r"a_file is a file, not a folder"):
        check_output_dir(existing / "below", "--out")
