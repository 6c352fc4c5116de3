"""``mtm-sim-control`` from a checkout: the command is :mod:`mtm_robot.cli.sim_control`."""

from mtm_robot.cli import sim_control

if __name__ == "__main__":
    sim_control.entry()
