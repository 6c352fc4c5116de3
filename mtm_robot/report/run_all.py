"""The evaluation report in one command: the paper's comparisons on walker-walk (issue 8).

  python -m mtm_robot.report --budget quick            # 2 CPU cores, within an hour
  python -m mtm_robot.report --budget full --device cuda --workers 4 --deadline-s 330

(``python bench/run_all.py`` is the same command from a checkout.)

Stages (``--stages``, default all, each resumable: a job with results is not run again):

* ``train``: every job of the budget's studies (:mod:`mtm_robot.report.studies`), each its
  own process (``python -m mtm_robot.report.studies --job NAME``), ``--workers`` at a time.
  With ``--deadline-s`` every MTM job starts at once and they agree on one step count that
  ends before the deadline (the way the ``full`` budget fits a lent GPU's time).
* ``evaluate``: closed-loop scores on the evaluation seeds, ``--workers`` processes.
* ``representation``: :mod:`mtm_robot.report.representation` (TD3+BC on raw states against
  frozen MTM state representations) on the budget's medium MTM.
* ``report``: the tables and figures into docs/benchmarks.md (sections ``versatility``,
  ``data-efficiency``, ``masking``, ``heteromodal``, ``systems``) and docs/figures/.

Data: ``--data-root`` (default ``MTM_DATA_ROOT``, else ``data/walker`` in the current
directory). Docs: ``docs/`` and ``README.md`` of the current directory (``MTM_DOCS_DIR``).

Budgets: ``quick`` (one seed, width-64 MTMs for 1,500 steps, 256-wide MLPs for 2,000 steps,
5 evaluation episodes) checks the whole pipeline on a CPU; ``full`` (two seeds, the shipped
width-128 MTM configuration for up to 20,000 steps, the reference's 1024-wide MLPs, 20
evaluation episodes) is what the tables in docs/benchmarks.md report, and wants a GPU;
``heteromodal`` (with ``--studies heteromodal``) is that study alone with three seeds and up
to 30,000 steps. ``--list`` prints the jobs. docs/evaluation.md has the measured run times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tqdm import tqdm

import mtm_robot
from mtm_robot.report import studies
from mtm_robot.report.studies import BUDGETS, DATA_ROOT, STUDIES, Job, Plan

#: Where this process imported mtm_robot from: job processes import the same copy.
IMPORT_ROOT = Path(mtm_robot.__file__).resolve().parents[1]
STAGES = ("train", "evaluate", "representation", "report")


def _job_command(job: Job, stage: str, args: argparse.Namespace, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "mtm_robot.report.studies", "--budget", args.budget,
        "--out", str(args.out), "--job", job.name, "--stage", stage,
        "--data-root", str(args.data_root), "--device", args.device, "--threads", str(args.threads),
        "--studies", ",".join(args.studies), *extra,
    ]  # fmt: skip


def run_processes(
    commands: list[tuple[str, list[str]]], workers: int, logs: Path, desc: str
) -> dict[str, int]:
    """Run ``(name, argv)`` commands, ``workers`` at a time; returns each exit status.
    Output goes to ``logs/<name>.log``; a failure is reported, the others go on."""
    logs.mkdir(parents=True, exist_ok=True)
    pending = list(commands)
    running: dict[str, subprocess.Popen[bytes]] = {}
    status: dict[str, int] = {}
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(IMPORT_ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    with tqdm(total=len(commands), desc=desc, unit="job", dynamic_ncols=True) as bar:
        while pending or running:
            while pending and len(running) < workers:
                name, argv = pending.pop(0)
                with open(logs / f"{name}.log", "ab") as log:
                    running[name] = subprocess.Popen(
                        argv, stdout=log, stderr=subprocess.STDOUT, env=env
                    )
            for name, proc in list(running.items()):
                code = proc.poll()
                if code is None:
                    continue
                status[name] = code
                del running[name]
                bar.update(1)
                if code:
                    bar.write(f"{name}: FAILED (exit {code}), see {logs / (name + '.log')}")
            time.sleep(0.2)
    return status


def train(plan: Plan, args: argparse.Namespace) -> dict[str, int]:
    todo = [j for j in plan.jobs if not (args.out / "jobs" / j.name / "train.json").is_file()]
    logs = args.out / "logs" / "train"
    done = len(plan.jobs) - len(todo)
    print(f"train: {len(todo)} jobs to run ({done} already done)", flush=True)
    if not args.deadline_s:
        commands = [(j.name, _job_command(j, "train", args, [])) for j in todo]
        return run_processes(commands, args.workers, logs, "train")
    # deadline mode: every MTM at once (they agree on a step count), baselines beside them
    shutil.rmtree(args.out / "barrier", ignore_errors=True)  # rates of an earlier run
    deadline = time.time() + args.deadline_s
    mtm = [j for j in todo if j.kind == "mtm"]
    extra = ["--deadline", f"{deadline}", "--barrier", str(len(mtm))]
    commands = [(j.name, _job_command(j, "train", args, extra)) for j in mtm]
    commands += [(j.name, _job_command(j, "train", args, [])) for j in todo if j.kind != "mtm"]
    return run_processes(commands, len(mtm) + args.workers, logs, "train")


def evaluate(plan: Plan, args: argparse.Namespace) -> dict[str, int]:
    todo = [
        j
        for j in plan.jobs
        if j.kind in ("mtm", "behavior_cloning", "return_conditioned")
        and (args.out / "jobs" / j.name / "train.json").is_file()
        and not (args.out / "jobs" / j.name / "eval.json").is_file()
    ]
    extra = ["--max-steps", str(args.max_steps)] if args.max_steps else []
    commands = [(j.name, _job_command(j, "evaluate", args, extra)) for j in todo]
    return run_processes(commands, args.workers, args.out / "logs" / "evaluate", "evaluate")


# the collection seed of each store (docs/datasets.md): the data depend only on it
COLLECT_SEEDS = {"expert": 0, "medium": 1, "medium-replay": 2, "medium-expert": 5}


def check_datasets(plan: Plan, data_root: Path) -> None:
    """Fail before any training when a store the plan needs is missing, saying how to make it."""
    missing = sorted({j.dataset for j in plan.jobs if not (data_root / j.dataset).is_dir()})
    if missing:
        commands = "\n".join(
            f"  python launch/collect.py --task walker --recipe {name} --episodes 50 "
            f"--seed {COLLECT_SEEDS.get(name, 0)} --out {data_root / name}"
            for name in missing
        )
        raise SystemExit(f"missing walker-walk stores under {data_root}: {missing}; make them "
                         f"with\n{commands}\nor pass --data-root")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--budget", choices=sorted(BUDGETS), default="quick")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {STAGES}")
    p.add_argument("--studies", default=",".join(STUDIES), help=f"comma list of {STUDIES}")
    p.add_argument("--out", type=Path, help="results directory (default runs/report-BUDGET)")
    p.add_argument("--data-root", type=Path, default=DATA_ROOT,
                   help="folder of the walker-walk stores expert/, medium/, medium-replay/, "
                        "medium-expert/ (launch/collect.py, docs/datasets.md; default "
                        "MTM_DATA_ROOT, else data/walker)")  # fmt: skip
    p.add_argument("--device", default="cpu", help="training device: cpu | cuda | auto")
    p.add_argument("--workers", type=int, default=2, help="job processes at a time")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per process")
    p.add_argument("--deadline-s", type=float, default=0.0,
                   help="train: every MTM ends within this many seconds (GPU budgets)")  # fmt: skip
    p.add_argument("--max-steps", type=int, default=0, help="cut evaluation episodes (smoke)")
    p.add_argument("--no-write", action="store_true", help="leave docs/ and README untouched")
    p.add_argument("--produced-by", default="",
                   help="report: the command that trained and evaluated OUT, when another "
                        "machine ran it (e.g. scripts/report_full_gpu.sh)")  # fmt: skip
    p.add_argument("--list", action="store_true", help="print the jobs and exit")
    args = p.parse_args(argv)
    args.stages = [s for s in args.stages.split(",") if s]
    args.studies = [s for s in args.studies.split(",") if s]
    for s in args.stages:
        if s not in STAGES:
            p.error(f"unknown stage '{s}'; known: {STAGES}")
    for s in args.studies:
        if s not in STUDIES:
            p.error(f"unknown study '{s}'; known: {STUDIES}")
    args.out = args.out or Path(f"runs/report-{args.budget}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    plan = studies.plan(BUDGETS[args.budget], tuple(args.studies))
    if args.list:
        for job in plan.jobs:
            print(f"{job.name:60s} {','.join(sorted(plan.studies[job]))}")
        print(f"{len(plan.jobs)} jobs")
        return 0
    if "train" in args.stages:
        check_datasets(plan, args.data_root)
    args.out.mkdir(parents=True, exist_ok=True)
    failed: dict[str, int] = {}
    start = time.perf_counter()
    if "train" in args.stages:
        failed.update({k: v for k, v in train(plan, args).items() if v})
    if "evaluate" in args.stages:
        failed.update({k: v for k, v in evaluate(plan, args).items() if v})
    if "representation" in args.stages:
        from mtm_robot.report import tables

        tables.run_representation(plan, args)
    if "report" in args.stages:
        from mtm_robot.report import tables

        tables.write_report(plan, args, time.perf_counter() - start)
    if failed:
        print(f"{len(failed)} jobs failed: {sorted(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
