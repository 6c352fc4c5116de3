"""List the registered tasks and what ships for each: an expert, the dataset recipes it
makes possible, a demonstration, a model.

Examples:
  mtm-tasks              # a table
  mtm-tasks --json       # the same as a JSON list, for scripts

Found from the files, not a list: a task has an expert when ``sim/experts/<task>/`` holds
``expert.safetensors`` (``mtm-train-expert --ship`` writes it), a recipe when that folder holds
the policies the recipe reads (``mtm-collect --recipe``), a demonstration when it holds
``demos/episode_000000.npz`` (what ``--mode inverse_dynamics`` tracks by default) and a model
when ``mtm_robot/checkpoints/<task>/`` holds one (``--checkpoint default``).
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any, NoReturn

os.environ.setdefault("MUJOCO_GL", "egl")

from controllers.session import shipped_demonstration
from mtm_robot.checkpoint_meta import shipped_tasks
from mtm_robot.cli import run
from sim.datasets import available_recipes, default_policy_dir
from sim.registry import known_tasks, task_spec


def inventory() -> list[dict[str, Any]]:
    """One row per registered task: what ships for it."""
    models = set(shipped_tasks())
    rows = []
    for task in known_tasks():
        spec, policies = task_spec(task), default_policy_dir(task)
        rows.append(
            {
                "task": task,
                "backend": spec.backend,
                "expert": (policies / "expert.safetensors").is_file(),
                "recipes": available_recipes(task, policies),
                "demonstration": shipped_demonstration(task) is not None,
                "model": task in models,
                "scored": spec.reference is not None,  # reference returns: a normalised score
                "description": spec.description,
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = ("task", "backend", "expert", "model", "demo", "scored", "dataset recipes")
    cells = [
        (
            r["task"],
            r["backend"],
            "yes" if r["expert"] else "-",
            "yes" if r["model"] else "-",
            "yes" if r["demonstration"] else "-",
            "yes" if r["scored"] else "-",
            ", ".join(r["recipes"]),
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(c[:-1], widths)) + "  " + c[-1] for c in [head, *cells]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list, nothing else")
    args = parser.parse_args(argv)
    rows = inventory()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(table(rows))
    print(
        "\nrecipes: mtm-collect --recipe; model: --checkpoint default; demo: what --mode "
        "inverse_dynamics tracks; a domain (walker) names its first task"
    )
    return 0


def entry() -> NoReturn:
    """The ``mtm-tasks`` command (``python launch/tasks.py`` from a checkout)."""
    run(main)
