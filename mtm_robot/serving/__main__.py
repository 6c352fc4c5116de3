"""``python -m mtm_robot.serving``: the inference node, as ``mtm-serve`` (see
:mod:`mtm_robot.cli.serve`)."""

from mtm_robot.cli.serve import entry

entry()
