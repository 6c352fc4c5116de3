"""``python -m mtm_robot.report``: the evaluation report (see :mod:`mtm_robot.report.run_all`)."""

import sys

from mtm_robot.report.run_all import main

sys.exit(main())
