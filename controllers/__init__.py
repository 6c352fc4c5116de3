"""Fixed-rate control loops: pacing, deadlines, fallbacks, safety limits, reference tracking.

Imports neither torch nor the model: a control process starts fast and runs on a robot
computer without a deep-learning stack.
"""
