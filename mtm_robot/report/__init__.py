"""The evaluation report (issue 8): the paper's comparisons on walker-walk, as part of the package.

``python -m mtm_robot.report --budget quick`` (or ``python bench/run_all.py``) trains every
job of a budget's studies, scores them with the one closed-loop evaluator
(:mod:`sim.evaluation`) and writes the tables and figures into ``docs/benchmarks.md``.

* :mod:`~mtm_robot.report.studies`: the studies as one grid of training jobs, and one job;
* :mod:`~mtm_robot.report.run_all`: the stages (train, evaluate, representation, report);
* :mod:`~mtm_robot.report.tables`: the tables, figures and the README headline;
* :mod:`~mtm_robot.report.representation`: TD3+BC on raw states against frozen MTM features;
* :mod:`~mtm_robot.report.page`: the sections of the benchmarks page (also the bench scripts').

This subpackage is an application on top of the library: it imports ``sim`` and
``controllers``; nothing else in ``mtm_robot`` imports it.
"""
