"""The documented pipeline over every registered task, with tiny budgets (issue 16, item 6).

For each task of ``sim.registry.known_tasks()``: train an expert (``mtm-train-expert``, a few
hundred SAC steps of a width-32 network) and ship it into a temporary policy folder
(``--ship --ship-to``), collect two expert episodes with it (``mtm-collect --policy-dir``),
train an MTM for 5 steps (``mtm-train --config mtm_tiny``), then serve that checkpoint from an
inference node and drive the task with the controller for 20 lockstep steps
(``controllers.session.run_session``, what ``mtm-sim-control --lockstep`` runs). A task that
ships no expert must name the command that makes one, and that command is the one run here.

The commands run in this process (their ``main(argv)``); every environment they build comes
from the registry, whose factories are wrapped here to end episodes after ``EPISODE_STEPS``
control steps (the time limit is the only change), so each task costs a few seconds.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sim import registry
from sim.datasets import MissingPolicyError, default_policy_dir, require_policies

EPISODE_STEPS = 60
CONTROL_STEPS = 20


@pytest.fixture
def short_episodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every registered task's episodes end after ``EPISODE_STEPS`` steps."""

    def shortened(factory: Any) -> Any:
        def make(**kwargs: Any) -> Any:
            env = factory(**kwargs)
            env.max_episode_steps = min(env.max_episode_steps, EPISODE_STEPS)
            return env

        return make

    for name, spec in list(registry._TASKS.items()):
        monkeypatch.setitem(
            registry._TASKS, name, dataclasses.replace(spec, factory=shortened(spec.factory))
        )


def _expert_command(task: str, out: Path, ship_to: Path) -> list[list[str]]:
    """The train-and-ship commands the missing-expert message names, with tiny budgets."""
    tiny = ["seed_steps=100", "eval_every=200", "eval_episodes=1", "checkpoint_every=200",
            "log_every=100", "sac.hidden_dim=32", "sac.batch_size=32"]  # fmt: skip
    train = ["--task", task, "--steps", "200", "--out", str(out), "--no-progress"]
    for item in tiny:
        train += ["--set", item]
    ship = ["--ship", str(out), "--ship-to", str(ship_to), "--episodes", "1"]
    return [train, [*ship, "--replay-every", "200"]]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("task", registry.known_tasks())
def test_the_whole_pipeline_runs_on_every_task(
    task: str, short_episodes: None, tmp_path: Path
) -> None:
    from controllers.loop import ControllerConfig
    from controllers.session import SessionConfig, run_session
    from mtm_robot.checkpoint_meta import read_metadata
    from mtm_robot.cli import collect, train, train_expert
    from mtm_robot.serving.config import BackendConfig, ServeConfig
    from mtm_robot.serving.server import InferenceNode

    # 1. the expert: a task without a shipped one says which command makes it
    if not (default_policy_dir(task) / "expert.safetensors").exists():
        with pytest.raises(MissingPolicyError) as missing:
            require_policies(task, "expert", None)
        message = str(missing.value)
        assert f"python launch/train_expert.py --task {task} --out runs/{task}-sac" in message
        assert f"python launch/train_expert.py --ship runs/{task}-sac" in message
    policies = tmp_path / "policies"
    for argv in _expert_command(task, tmp_path / "sac", policies):
        assert train_expert.main(argv) == 0
    shipped = json.loads((policies / "expert.json").read_text())
    assert np.isfinite(shipped["test_eval"]["return_mean"])
    assert shipped["run"]["steps_done"] == 200 and shipped["run"]["config"]["task"] == task
    assert [p.name for p in (policies / "replay").iterdir()] == ["step_0000200.safetensors"]

    # 2. collect with it
    data = tmp_path / "data"
    argv = ["--task", task, "--recipe", "expert", "--episodes", "2", "--out", str(data),
            "--policy-dir", str(policies)]  # fmt: skip
    assert collect.main(argv) == 0
    summary = json.loads((data / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["transitions"] > 0

    # 3. train an MTM for a few steps
    run = tmp_path / "mtm"
    argv = ["--config", "mtm_tiny", "--data", str(data), "--steps", "5", "--set", "eval_every=5",
            "--set", "checkpoint_every=5", "--set", "batch_size=8", "--out", str(run),
            "--no-progress"]  # fmt: skip
    assert train.main(argv) == 0
    checkpoint = run / "checkpoints" / "latest"
    assert read_metadata(checkpoint)["task"] == registry.resolve(task)

    # 4. serve it and drive the task for 20 lockstep steps
    backend = BackendConfig(max_batch=1)
    node = InferenceNode(
        ServeConfig(checkpoint=str(checkpoint), bind="tcp://127.0.0.1:*", backend=backend)
    )
    endpoint = node.run_in_thread()
    try:
        assert node.wait_ready(60)
        config = SessionConfig(
            task=task,
            server=endpoint,
            episodes=1,
            controller=ControllerConfig(realtime=False, max_steps=CONTROL_STEPS),
        )
        result = run_session(config, tmp_path / "control")
    finally:
        node.close()
    (episode,) = result.episodes
    (summary,) = result.summaries
    assert episode.ticks == CONTROL_STEPS or episode.terminated, summary
    assert summary["deadline_misses"] == 0 and np.isfinite(episode.episode_return), summary
    assert summary["models"] == [read_metadata(checkpoint)["model_id"]], summary
    with registry.make(task) as env:
        low, high = env.action_low, env.action_high
    assert np.all(episode.actions >= low) and np.all(episode.actions <= high), episode.actions
