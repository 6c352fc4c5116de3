"""The evaluation report's studies (issue 8) as one grid of training jobs.

Every study is a set of jobs; a job trains one network on one walker-walk dataset and then
scores it. A job shared by two studies (the MTM on 2 labelled expert episodes is both a
data-efficiency point and the heteromodal study's labelled-only arm) runs once.

* ``versatility`` (reference 7.2): per dataset, one MTM (the shipped mask mix) against four
  specialised MLPs (BC, RCBC, ID, FD). Scores: MTM in ``behavior_cloning`` and
  ``return_conditioned`` mode against MLP-BC and MLP-RCBC; held-out normalised ID/FD errors.
* ``data_efficiency`` (reference 7.5): MTM and MLP-RCBC on the first N expert episodes.
* ``masking`` (reference 7.3): MTMs trained with ``random``, ``random_autoregressive`` and the
  specialised ``return_conditioned`` mask alone, on one dataset.
* ``heteromodal`` (reference 5.3, 7.4): N labelled expert episodes alone against the same plus
  every other expert episode without actions, in ``return_conditioned`` and ``two_stage``.

Run through ``python -m mtm_robot.report`` (:mod:`mtm_robot.report.run_all`); one job is
``python -m mtm_robot.report.studies --budget B --out DIR --job NAME --stage
train|evaluate``. Training writes ``DIR/jobs/NAME/`` (checkpoint, metrics, ``train.json``);
evaluation adds ``eval.json``: one episode per evaluation seed
(``controllers.session.EVALUATION_SEED_BASE + i``, never used for data), all stepped in
parallel (``sim.evaluation``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtm_robot.config import PRESETS, load_config, save_config
from mtm_robot.data.episodes import load_episodes
from mtm_robot.training import BASELINE_TASKS

if TYPE_CHECKING:  # torch loads when a job runs, not for `--help` or `--list`
    from mtm_robot.data.episodes import Episode
    from mtm_robot.training.train import TrainConfig, Trainer

TASK = "walker-walk"
#: The shipped MTM configuration the studies train (a preset shipped with the package).
MTM_CONFIG = PRESETS / "mtm_walker.yaml"
#: Where the walker-walk stores expert/, medium/, ... are (docs/datasets.md): ``--data-root``,
#: else ``MTM_DATA_ROOT``, else ``data/walker`` under the current directory.
DATA_ROOT = Path(os.environ.get("MTM_DATA_ROOT", "data/walker"))
DATASETS = ("expert", "medium", "medium-replay", "medium-expert")
STUDIES = ("versatility", "data_efficiency", "masking", "heteromodal")
# MTM masking presets: the shipped mix (the config file's), or one pattern alone
MASK_PRESETS = ("default", "random", "random_autoregressive", "return_conditioned")


@dataclass(frozen=True)
class Budget:
    """How big every study is; ``quick`` fits an hour on 2 CPU cores, ``full`` wants a GPU."""

    name: str
    seeds: tuple[int, ...]
    mtm_steps: int  # the most; a deadline (``--deadline``) can plan fewer, equal for all
    mtm_overrides: tuple[str, ...]
    mlp_overrides: tuple[str, ...]
    eval_episodes: int
    datasets: tuple[str, ...] = DATASETS
    fractions: tuple[int, ...] = (2, 10)  # data efficiency: labelled expert episodes
    heteromodal_labelled: tuple[int, ...] = (2,)
    heteromodal_seeds: tuple[int, ...] = (0,)
    masking_dataset: str = "medium-replay"
    masking_presets: tuple[str, ...] = ("random", "random_autoregressive", "return_conditioned")
    section_suffix: str = ""  # its docs/benchmarks.md sections: "versatility" + suffix, ...


BUDGETS = {
    "quick": Budget(
        name="quick",
        seeds=(0,),
        mtm_steps=1500,
        mtm_overrides=(
            "model.width=64",
            "model.encoder_layers=1",
            "batch_size=128",
            "optim.warmup_steps=150",
        ),
        mlp_overrides=("hidden=256", "batch_size=256", "steps=2000", "eval_every=1000"),
        eval_episodes=5,
        section_suffix="-quick",
    ),
    "full": Budget(
        name="full",
        seeds=(0, 1),
        mtm_steps=20_000,
        mtm_overrides=("batch_size=512",),
        mlp_overrides=("steps=5000", "eval_every=5000"),
        eval_episodes=20,
        fractions=(1, 2, 5),
        heteromodal_labelled=(1, 2),
        heteromodal_seeds=(0, 1),
    ),
    "versatility-cpu": Budget(  # --studies versatility: the MTMs of seed 0 long, on 2 CPU cores
        name="versatility-cpu",
        seeds=(0,),
        mtm_steps=20_000,
        mtm_overrides=(),
        mlp_overrides=("steps=5000", "eval_every=5000"),
        eval_episodes=20,
        section_suffix="-cpu",
    ),
    "heteromodal": Budget(  # the heteromodal study alone (--studies heteromodal), 3 seeds
        name="heteromodal",
        seeds=(0,),
        mtm_steps=30_000,
        mtm_overrides=("batch_size=512",),
        mlp_overrides=(),
        eval_episodes=20,
        heteromodal_labelled=(1,),
        heteromodal_seeds=(0, 1, 2),
    ),
    "smoke": Budget(  # the tests' budget: seconds, numbers meaningless
        name="smoke",
        seeds=(0,),
        mtm_steps=20,
        mtm_overrides=(
            "model.width=32",
            "model.encoder_layers=1",
            "model.heads=2",
            "batch_size=16",
            "optim.warmup_steps=5",
        ),
        mlp_overrides=("hidden=32", "batch_size=32", "steps=20", "eval_every=10"),
        eval_episodes=2,
        datasets=("expert", "medium"),
        fractions=(1,),
        heteromodal_labelled=(1,),
        masking_dataset="medium",
        masking_presets=("random",),
    ),
}


@dataclass(frozen=True)
class Job:
    kind: str  # "mtm" or a baseline task (mtm_robot.training.baselines.BASELINE_TASKS)
    dataset: str
    seed: int
    episodes: int = 0  # labelled episodes: the first N of the store (0: all)
    action_free_rest: bool = False  # the store's other episodes join without actions
    masks: str = "default"

    @property
    def name(self) -> str:
        parts = [self.kind.replace("_", "-"), self.dataset]
        if self.episodes:
            parts.append(f"{self.episodes}ep")
        if self.action_free_rest:
            parts.append("plus-action-free")
        if self.masks != "default":
            parts.append(f"{self.masks.replace('_', '-')}-masks")
        return "_".join([*parts, f"seed{self.seed}"])


@dataclass
class Plan:
    """The jobs of a budget, each with the studies that use it (and so the modes it needs)."""

    budget: Budget
    studies: dict[Job, set[str]] = field(default_factory=dict)

    def add(self, job: Job, study: str) -> None:
        self.studies.setdefault(job, set()).add(study)

    @property
    def jobs(self) -> list[Job]:
        """MTMs first (the long ones), then baselines; heteromodal and versatility first."""
        order = {s: i for i, s in enumerate(("heteromodal", "versatility", "masking"))}
        return sorted(
            self.studies,
            key=lambda j: (j.kind != "mtm", min(order.get(s, 9) for s in self.studies[j])),
        )

    def job(self, name: str) -> Job:
        for job in self.studies:
            if job.name == name:
                return job
        raise SystemExit(f"no job '{name}' in the {self.budget.name} budget")

    def modes(self, job: Job) -> list[str]:
        if job.kind != "mtm":
            return []
        modes = ["return_conditioned"]
        if "versatility" in self.studies[job]:
            modes.insert(0, "behavior_cloning")
        if "heteromodal" in self.studies[job]:
            modes.append("two_stage")
        return modes


def plan(budget: Budget, studies: tuple[str, ...] = STUDIES) -> Plan:
    p = Plan(budget)
    if "versatility" in studies:
        for dataset in budget.datasets:
            for seed in budget.seeds:
                p.add(Job("mtm", dataset, seed), "versatility")
                for task in BASELINE_TASKS:
                    p.add(Job(task, dataset, seed), "versatility")
    if "data_efficiency" in studies:
        for n in budget.fractions:
            for seed in budget.seeds:
                p.add(Job("mtm", "expert", seed, episodes=n), "data_efficiency")
                p.add(Job("return_conditioned", "expert", seed, episodes=n), "data_efficiency")
        for seed in budget.seeds:  # the whole store: the versatility jobs
            p.add(Job("mtm", "expert", seed), "data_efficiency")
            p.add(Job("return_conditioned", "expert", seed), "data_efficiency")
    if "masking" in studies:
        for preset in ("default", *budget.masking_presets):
            for seed in budget.seeds:
                p.add(Job("mtm", budget.masking_dataset, seed, masks=preset), "masking")
    if "heteromodal" in studies:
        for n in budget.heteromodal_labelled:
            for seed in budget.heteromodal_seeds:
                p.add(Job("mtm", "expert", seed, episodes=n), "heteromodal")
                p.add(Job("mtm", "expert", seed, n, action_free_rest=True), "heteromodal")
    return p


# -- training --------------------------------------------------------------------------------
def job_episodes(job: Job, data_root: Path) -> list[Episode]:
    episodes = load_episodes(data_root / job.dataset)
    if not job.episodes:
        return episodes
    if not 0 < job.episodes < len(episodes):
        raise SystemExit(f"{job.name}: {job.episodes} episodes of {len(episodes)} in the store")
    labelled = episodes[: job.episodes]
    if job.action_free_rest:
        return labelled + [e.without_actions() for e in episodes[job.episodes :]]
    return labelled


def mtm_config(job: Job, budget: Budget, steps: int, device: str, threads: int) -> TrainConfig:
    overrides = [
        f"steps={steps}",
        f"eval_every={steps}",
        f"checkpoint_every={steps}",
        f"seed={job.seed}",
        f"device={device}",
        f"threads={threads}",
        f"model_id=mtm-{job.name}",
        f"task={TASK}",
        *budget.mtm_overrides,
    ]
    if job.episodes:  # a handful of episodes cannot spare a validation one
        overrides.append("data.validation_fraction=0.0")
    if job.masks != "default":
        if job.masks not in MASK_PRESETS:
            raise SystemExit(f"unknown mask preset '{job.masks}'; known: {MASK_PRESETS}")
        overrides.append(f"masks.patterns={{{job.masks}: 1.0}}")
    from mtm_robot.training.train import TrainConfig

    return load_config(TrainConfig, MTM_CONFIG, overrides)


def _agree_on_steps(trainer: Trainer, args: argparse.Namespace, job: Job) -> int:
    """Train ``probe`` steps, publish this job's rate, and let every concurrent MTM job plan
    the same number of steps: the slowest job's rate times the time left before the deadline.
    Warm-up (1000 steps) is longer than the probe, so the schedule does not depend on the
    plan until after it is made."""
    import torch

    probe, start_at = 300, 100
    for i in range(probe):
        if i == start_at:
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        trainer.train_step(sync=False)
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    rate = (probe - start_at) / (time.perf_counter() - t0)
    barrier = args.out / "barrier"
    barrier.mkdir(parents=True, exist_ok=True)
    (barrier / f"{job.name}.rate").write_text(f"{rate}\n")
    wait_until = time.time() + 120
    while time.time() < wait_until:
        rates = [float(p.read_text()) for p in barrier.glob("*.rate")]
        if len(rates) >= args.barrier:
            break
        time.sleep(0.5)
    slowest = min(rates)
    left = args.deadline - time.time()
    planned = int(slowest * left * 0.9) // 500 * 500
    steps = min(trainer.config.steps, max(probe + 500, planned))
    print(f"{job.name}: {rate:.0f} steps/s here, slowest of {len(rates)} {slowest:.0f}, "
          f"{left:.0f} s left -> {steps} steps", flush=True)  # fmt: skip
    return steps


def train_job(job: Job, args: argparse.Namespace, budget: Budget) -> dict[str, Any]:
    import torch

    from mtm_robot.training.baselines import BaselineConfig, train_baseline
    from mtm_robot.training.train import Trainer

    out = args.out / "jobs" / job.name
    episodes = job_episodes(job, args.data_root)
    provenance: dict[str, Any] = {"bench": "studies", "budget": budget.name, "job": asdict(job)}
    start = time.perf_counter()
    if job.kind == "mtm":
        config = mtm_config(job, budget, budget.mtm_steps, args.device, args.threads)
        trainer = Trainer(config, episodes, out, provenance)
        if args.deadline and trainer.step == 0 and config.steps > 1000:
            steps = _agree_on_steps(trainer, args, job)
            trainer.config = mtm_config(job, budget, steps, args.device, args.threads)
            save_config(trainer.config, out / "config.yaml")
            trainer.provenance["steps_planned_for_deadline"] = steps
        metrics = trainer.run(progress=False)
        steps = trainer.config.steps
        device = str(trainer.device)
    else:
        if job.action_free_rest:
            raise SystemExit(f"{job.name}: an MLP baseline cannot use action-free data")
        torch.set_num_threads(max(1, args.threads))
        overrides = [f"seed={job.seed}", f"device={args.device}", *budget.mlp_overrides]
        if job.episodes:
            overrides.append("data.validation_fraction=0.0")
        bconfig = load_config(BaselineConfig, None, overrides)
        metrics = train_baseline(job.kind, bconfig, episodes, out, provenance, progress=False)
        steps = bconfig.steps
        device = args.device
    wall = time.perf_counter() - start
    result = {"job": asdict(job), "name": job.name, "steps": steps, "wall_s": wall,
              "device": device, "metrics": metrics}  # fmt: skip
    (out / "train.json").write_text(json.dumps(result, indent=2))
    return result


# -- evaluation ------------------------------------------------------------------------------
def evaluation_seeds(budget: Budget) -> list[int]:
    from controllers.session import EVALUATION_SEED_BASE

    return [EVALUATION_SEED_BASE + i for i in range(budget.eval_episodes)]


def evaluate_job(job: Job, args: argparse.Namespace, plan_: Plan) -> dict[str, Any]:
    import torch

    from mtm_robot.evaluation import BaselinePolicy, MTMPolicy
    from mtm_robot.inference import Predictor
    from mtm_robot.return_target import default_return_target
    from mtm_robot.training.baselines import load_baseline
    from mtm_robot.training.checkpoint import load_checkpoint
    from sim.evaluation import BatchPolicy, evaluate

    torch.set_num_threads(max(1, args.threads))
    out = args.out / "jobs" / job.name
    seeds = evaluation_seeds(plan_.budget)
    policies: dict[str, BatchPolicy] = {}
    if job.kind == "mtm":
        checkpoint = load_checkpoint(out / "checkpoints" / "latest")
        predictor = Predictor.from_model(checkpoint.model, checkpoint.normalizer)
        target = default_return_target(checkpoint.metadata)
        for mode in plan_.modes(job):
            policies[mode] = MTMPolicy(predictor, mode, target)
    elif job.kind in ("behavior_cloning", "return_conditioned"):
        baseline = load_baseline(out)
        target = default_return_target(baseline.metadata)
        policies[job.kind] = BaselinePolicy(baseline, target)
    result: dict[str, Any] = {"name": job.name, "seeds": seeds, "scores": {}, "returns": {}}
    for mode, policy in policies.items():
        r = evaluate(policy, TASK, seeds, max_steps=args.max_steps)
        result["scores"][mode] = r.scores.tolist()
        result["returns"][mode] = r.returns.tolist()
        print(f"{job.name} {mode}: {r.scores.mean():.1f} ± {r.scores.std():.1f} "
              f"({len(seeds)} episodes, {r.wall_s:.0f} s)", flush=True)  # fmt: skip
    (out / "eval.json").write_text(json.dumps(result, indent=2))
    return result


# -- results ---------------------------------------------------------------------------------
def load_results(out: Path, plan_: Plan) -> dict[Job, dict[str, Any]]:
    """Every job's train.json merged with its eval.json, where they exist."""
    results: dict[Job, dict[str, Any]] = {}
    for job in plan_.jobs:
        directory = out / "jobs" / job.name
        if not (directory / "train.json").is_file():
            continue
        merged = json.loads((directory / "train.json").read_text())
        if (directory / "eval.json").is_file():
            merged.update(json.loads((directory / "eval.json").read_text()))
        results[job] = merged
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--budget", choices=sorted(BUDGETS), default="quick")
    p.add_argument("--out", type=Path, required=True, help="results directory")
    p.add_argument("--job", required=True, help="job name (python -m mtm_robot.report --list)")
    p.add_argument("--stage", choices=("train", "evaluate"), required=True)
    p.add_argument("--data-root", type=Path, default=DATA_ROOT,
                   help="folder of the walker-walk episode stores (docs/datasets.md)")  # fmt: skip
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--deadline", type=float, default=0.0,
                   help="unix time by which MTM jobs must end (0: all steps)")  # fmt: skip
    p.add_argument("--barrier", type=int, default=1,
                   help="MTM jobs running at once (they agree on steps)")  # fmt: skip
    p.add_argument("--max-steps", type=int, default=0, help="cut evaluation episodes (smoke)")
    p.add_argument("--studies", default=",".join(STUDIES))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    studies = tuple(s for s in args.studies.split(",") if s)
    plan_ = plan(BUDGETS[args.budget], studies)
    job = plan_.job(args.job)
    if args.stage == "train":
        train_job(job, args, plan_.budget)
    else:
        evaluate_job(job, args, plan_)
    return 0


if __name__ == "__main__":
    sys.exit(main())
