"""The representation study lives in the package: ``python -m mtm_robot.report.representation``
(same arguments). This file keeps ``python bench/representation.py ...`` working."""

import sys

from mtm_robot.report.representation import main

if __name__ == "__main__":
    sys.exit(main())
