"""``mtm-keygen`` from a checkout: the command is :mod:`mtm_robot.cli.keygen`."""

from mtm_robot.cli import keygen

if __name__ == "__main__":
    keygen.entry()
