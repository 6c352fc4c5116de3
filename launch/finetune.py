"""``mtm-finetune`` from a checkout: the command is :mod:`mtm_robot.cli.finetune`."""

from mtm_robot.cli import finetune

if __name__ == "__main__":
    finetune.entry()
