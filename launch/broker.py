"""``mtm-broker`` from a checkout: the command is :mod:`mtm_robot.cli.broker`."""

from mtm_robot.cli import broker

if __name__ == "__main__":
    broker.entry()
