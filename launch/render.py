"""``mtm-render`` from a checkout: the command is :mod:`mtm_robot.cli.render`."""

from mtm_robot.cli import render

if __name__ == "__main__":
    render.entry()
