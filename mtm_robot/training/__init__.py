"""Training: the MTM (:mod:`~mtm_robot.training.train`) and the specialised MLP baselines
(:mod:`~mtm_robot.training.baselines`). Nothing here imports torch, so a command can list the
baselines in its ``--help`` before any model code loads."""

#: The specialised MLP baselines, by the inference mode each one replaces.
BASELINE_TASKS = ("behavior_cloning", "return_conditioned", "inverse_dynamics", "forward_dynamics")
