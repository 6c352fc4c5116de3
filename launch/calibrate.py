"""``mtm-calibrate`` from a checkout: the command is :mod:`mtm_robot.cli.calibrate`."""

from mtm_robot.cli import calibrate

if __name__ == "__main__":
    calibrate.entry()
