"""``mtm-train-expert`` from a checkout: the command is :mod:`mtm_robot.cli.train_expert`."""

from mtm_robot.cli import train_expert

if __name__ == "__main__":
    train_expert.entry()
