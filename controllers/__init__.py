"""Fixed-rate control loops: pacing, deadlines, fallbacks, safety limits, reference tracking.

The robot side is one interface (:mod:`controllers.robot`), which the simulators and a real
robot implement; I/O maps are applied here at run time (:mod:`controllers.io_map`).

Imports neither torch, the model nor ``calibration`` (which builds on this package), and no
simulator until a session builds a registered task: a control process starts fast and runs on
a robot computer without a deep-learning stack (``tests/test_dependency_rules.py``).
"""
