"""``mtm-train`` from a checkout: the command is :mod:`mtm_robot.cli.train`."""

from mtm_robot.cli import train

if __name__ == "__main__":
    train.entry()
