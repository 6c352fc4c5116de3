"""The evaluation report's job grid (mtm_robot/report/studies.py), its runner
(mtm_robot/report/run_all.py and the bench/run_all.py shim), MLP baselines as policies
(mtm_robot/evaluation.py) and the tables (mtm_robot/report/tables.py)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mtm_robot.data.episodes import Episode, episode_file, save_episode
from mtm_robot.evaluation import BaselinePolicy
from mtm_robot.report import studies
from mtm_robot.report import tables as study_tables
from mtm_robot.training.baselines import BaselineConfig, load_baseline, train_baseline
from sim import registry
from sim.datasets import rollout
from sim.evaluation import evaluate

ROOT = Path(__file__).resolve().parents[2]


def test_a_job_shared_by_two_studies_runs_once_with_the_modes_of_both():
    plan = studies.plan(studies.BUDGETS["full"])
    names = [j.name for j in plan.jobs]
    assert len(names) == len(set(names))
    shared = studies.Job("mtm", "expert", 0, episodes=2)
    assert plan.studies[shared] == {"data_efficiency", "heteromodal"}
    assert plan.modes(shared) == ["return_conditioned", "two_stage"]
    whole = studies.Job("mtm", "expert", 0)
    assert plan.modes(whole) == ["behavior_cloning", "return_conditioned"]
    assert plan.modes(studies.Job("forward_dynamics", "expert", 0)) == []
    kinds = [j.kind for j in plan.jobs]
    assert kinds.index("behavior_cloning") > max(i for i, k in enumerate(kinds) if k == "mtm")
    with pytest.raises(SystemExit, match="no job"):
        plan.job("mtm_nowhere_seed0")


def test_labelled_jobs_take_the_first_episodes_and_the_heteromodal_arm_the_rest_action_free(
    tmp_path,
):
    for i in range(6):
        save_episode(
            episode_file(tmp_path / "expert", i),
            Episode(np.full((5, 2), i), np.full((5, 1), i), np.ones(5), meta={"i": i}),
        )
    only = studies.job_episodes(studies.Job("mtm", "expert", 0, episodes=2), tmp_path)
    assert [e.meta["i"] for e in only] == [0, 1]
    assert all(e.actions is not None for e in only)
    het = studies.job_episodes(studies.Job("mtm", "expert", 0, 2, action_free_rest=True), tmp_path)
    assert [e.actions is None for e in het] == [False, False, True, True, True, True]
    np.testing.assert_array_equal(het[3].states, np.full((5, 2), 3))
    with pytest.raises(SystemExit, match="6 episodes"):
        studies.job_episodes(studies.Job("mtm", "expert", 0, episodes=6), tmp_path)


def test_mask_presets_become_the_training_patterns():
    budget = studies.BUDGETS["smoke"]
    job = studies.Job("mtm", "medium", 0, masks="random")
    config = studies.mtm_config(job, budget, 30, "cpu", 1)
    assert config.masks.patterns == {"random": 1.0}
    assert config.steps == 30 and config.model.width == 32
    default = studies.mtm_config(studies.Job("mtm", "medium", 0), budget, 30, "cpu", 1)
    assert set(default.masks.patterns) == {
        "random_autoregressive",
        "inverse_dynamics",
        "return_conditioned",
    }
    with pytest.raises(SystemExit, match="unknown mask preset"):
        studies.mtm_config(studies.Job("mtm", "medium", 0, masks="bogus"), budget, 30, "cpu", 1)


def _walker_stores(root: Path, names: tuple[str, ...], episodes: int = 3, steps: int = 80) -> None:
    with registry.make("walker") as env:
        for name in names:
            for i in range(episodes):
                rng = np.random.default_rng([i, len(name)])
                result = rollout(env, lambda _o, r: r.uniform(-1, 1, 6), i, rng)
                save_episode(
                    episode_file(root / name, i),
                    Episode(result.states[:steps], result.actions[:steps], result.rewards[:steps]),
                )


def test_a_loaded_baseline_predicts_what_it_trained_and_drives_a_batched_rollout(tmp_path):
    _walker_stores(tmp_path / "data", ("expert",))
    from mtm_robot.data.episodes import load_episodes

    episodes = load_episodes(tmp_path / "data" / "expert")
    config = BaselineConfig(hidden=16, layers=1, steps=30, batch_size=16, eval_every=10)
    metrics = train_baseline(
        "return_conditioned", config, episodes, tmp_path / "rc", progress=False
    )
    baseline = load_baseline(tmp_path / "rc")
    assert baseline.inputs == ["states", "returns"]
    assert baseline.metadata["metrics"] == metrics
    assert {"return_min", "return_max"} <= set(baseline.metadata["return_stats"])
    states = episodes[0].states[:4]
    target = np.full((4, 1), 0.5, np.float32)
    # by hand: normalise, run the network, denormalise
    x = np.concatenate(
        [
            baseline.normalizer.normalize("states", states),
            baseline.normalizer.normalize("returns", target),
        ],
        axis=1,
    )
    with torch.no_grad():
        y = baseline.model(torch.from_numpy(x.astype(np.float32))).numpy()
    expected = baseline.normalizer.denormalize("actions", y)
    np.testing.assert_allclose(baseline.predict(states, target), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="takes 2 inputs"):
        baseline.predict(states)
    with pytest.raises(ValueError, match="needs a return target"):
        BaselinePolicy(baseline)
    policy = BaselinePolicy(baseline, return_target=0.5)
    result = evaluate(policy, "walker-walk", [1, 2], max_steps=15)
    assert result.returns.shape == (2,) and np.isfinite(result.scores).all()
    assert result.returns[0] != result.returns[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_all_trains_evaluates_and_reports_a_smoke_budget(tmp_path):
    _walker_stores(tmp_path / "data", ("expert", "medium"), episodes=3)
    out = tmp_path / "report"
    command = [
        sys.executable, "-m", "mtm_robot.report", "--budget", "smoke",
        "--studies", "data_efficiency,heteromodal", "--stages", "train,evaluate,report",
        "--data-root", str(tmp_path / "data"), "--out", str(out), "--max-steps", "10",
        "--no-write", "--workers", "2",
    ]  # fmt: skip
    # from outside the checkout: the report is a package module
    done = subprocess.run(command, capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    jobs = out / "jobs"
    het = json.loads((jobs / "mtm_expert_1ep_plus-action-free_seed0" / "eval.json").read_text())
    assert set(het["scores"]) == {"return_conditioned", "two_stage"}
    assert len(het["scores"]["two_stage"]) == studies.BUDGETS["smoke"].eval_episodes
    trained = json.loads((jobs / "return-conditioned_expert_seed0" / "train.json").read_text())
    assert "return_conditioned_error" in trained["metrics"]
    assert "## Heteromodal training" in done.stdout and "## Data efficiency" in done.stdout
    # a finished job is not run again; the checkout's bench/run_all.py is the same command
    shim = [sys.executable, str(ROOT / "bench/run_all.py"), *command[3:-2], "--stages", "train"]
    again = subprocess.run(shim, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert again.returncode == 0 and "train: 0 jobs to run" in again.stdout


def test_the_tables_average_over_seeds_and_judge_the_goals(tmp_path):
    budget = studies.BUDGETS["smoke"]
    plan = studies.plan(budget, ("versatility",))

    def write(job: studies.Job, metrics: dict[str, float], scores: dict[str, list[float]]) -> None:
        d = tmp_path / "jobs" / job.name
        d.mkdir(parents=True)
        train = {"steps": 20, "device": "cpu", "metrics": metrics}
        (d / "train.json").write_text(json.dumps(train))
        (d / "eval.json").write_text(json.dumps({"scores": scores}))

    for dataset, (mtm_rc, mlp_rc, mtm_fd, mlp_fd) in {
        "expert": (90.0, 92.0, 0.1, 0.2),
        "medium": (50.0, 60.0, 0.3, 0.2),
    }.items():
        mtm_scores = {"return_conditioned": [mtm_rc - 1, mtm_rc + 1], "behavior_cloning": [1.0]}
        write(studies.Job("mtm", dataset, 0), {"forward_dynamics_error": mtm_fd}, mtm_scores)
        write(studies.Job("return_conditioned", dataset, 0), {}, {"return_conditioned": [mlp_rc]})
        write(studies.Job("forward_dynamics", dataset, 0), {"forward_dynamics_error": mlp_fd}, {})
    args = argparse.Namespace(out=tmp_path, data_root=tmp_path, no_write=True, argv=["x"])
    md, goals = study_tables.versatility(study_tables.Results(plan, tmp_path), args)
    assert "| expert | RCBC score | 92.0 | 90.0 |" in md  # one seed: no spread to show
    assert "| medium | FD error | 0.200 | 0.300 |" in md
    assert goals == {"fd": False, "rc": False}  # medium: FD worse, RC 10 points behind
    assert "not met (1/2)" in md


def test_run_all_stops_before_training_when_a_store_is_missing_and_says_how_to_make_it(tmp_path):
    from mtm_robot.report import run_all

    (tmp_path / "expert").mkdir()
    with pytest.raises(SystemExit) as stop:
        run_all.main(["--budget", "smoke", "--data-root", str(tmp_path), "--out",
                      str(tmp_path / "o")])  # fmt: skip
    message = str(stop.value)
    assert "['medium']" in message
    assert f"--recipe medium --episodes 50 --seed 1 --out {tmp_path / 'medium'}" in message
    assert not (tmp_path / "o").exists()
