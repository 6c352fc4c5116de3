"""``mtm-interop`` from a checkout: the command is :mod:`mtm_robot.cli.interop`."""

from mtm_robot.cli import interop

if __name__ == "__main__":
    interop.entry()
