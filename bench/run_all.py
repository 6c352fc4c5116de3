"""The evaluation report lives in the package: ``python -m mtm_robot.report`` (same arguments).
This file keeps ``python bench/run_all.py ...`` working."""

import sys

from mtm_robot.report.run_all import main

if __name__ == "__main__":
    sys.exit(main())
