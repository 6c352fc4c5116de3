"""What every command-line entry point in ``launch/`` shares: error exit codes and overrides.

Library code raises :class:`~mtm_robot.errors.MTMRobotError` with a message that names the bad
value; a launch script shows that message (no traceback) and exits with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

from mtm_robot.errors import MTMRobotError


def run(main: Callable[[], int]) -> NoReturn:
    """``sys.exit(main())``; a :class:`MTMRobotError` prints ``error: ...`` and exits 2,
    Ctrl-C exits 130."""
    try:
        code = main()
    except MTMRobotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code)


def flag_overrides(flags: dict[str, Any]) -> list[str]:
    """``--set``-style overrides from command-line flags that were given (not None)."""
    return [f"{key}={value}" for key, value in flags.items() if value is not None]
