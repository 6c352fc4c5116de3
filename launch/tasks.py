"""``mtm-tasks`` from a checkout: the command is :mod:`mtm_robot.cli.tasks`."""

from mtm_robot.cli import tasks

if __name__ == "__main__":
    tasks.entry()
