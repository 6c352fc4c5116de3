"""``mtm-collect`` from a checkout: the command is :mod:`mtm_robot.cli.collect`."""

from mtm_robot.cli import collect

if __name__ == "__main__":
    collect.entry()
