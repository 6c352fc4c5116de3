"""``mtm-record-demos`` from a checkout: the command is :mod:`mtm_robot.cli.record_demos`."""

from mtm_robot.cli import record_demos

if __name__ == "__main__":
    record_demos.entry()
