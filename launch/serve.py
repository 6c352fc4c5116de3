"""``mtm-serve`` from a checkout: the command is :mod:`mtm_robot.cli.serve`."""

from mtm_robot.cli import serve

if __name__ == "__main__":
    serve.entry()
