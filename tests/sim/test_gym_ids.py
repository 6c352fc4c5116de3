"""Every registered task is a gymnasium id that passes gymnasium's env checker, and an MTM
drives one from plain gymnasium code."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import sim
import sim.gym_ids
from sim.gym_ids import gym_id

ROOT = Path(__file__).resolve().parents[2]


def test_every_registered_task_has_an_id():
    assert [f"mtm_robot/{task}-v0" for task in sim.known_tasks()] == sim.gym_ids.IDS
    assert gymnasium.spec("mtm_robot/walker-v0").kwargs == {"task": "walker-walk"}


@pytest.mark.parametrize("task", sim.known_tasks())
def test_gymnasium_make_gives_an_env_that_passes_the_checker(task):
    env = gymnasium.make(gym_id(task))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # infinite observation bounds are intended
            check_env(env.unwrapped, skip_render_check=True)
        obs, _ = env.reset(seed=1)  # through gymnasium's own wrappers (passive checker)
        again, _ = gymnasium.make(gym_id(task)).reset(seed=1)
        np.testing.assert_array_equal(obs, again)
        assert env.observation_space.contains(obs.astype(env.observation_space.dtype))
        obs, reward, *_ = env.step(env.action_space.sample())
        assert obs.shape == env.observation_space.shape and np.isfinite(reward)
    finally:
        env.close()


def test_the_module_prefix_registers_without_an_import(tmp_path):
    """``gymnasium.make("sim.gym_ids:mtm_robot/<task>-v0")`` in an interpreter that imported
    nothing of ours: gymnasium imports the module and finds the id."""
    code = (
        "import sys, gymnasium\n"
        "assert 'sim' not in sys.modules\n"
        "env = gymnasium.make('sim.gym_ids:mtm_robot/mujoco-pointmass-v0')\n"
        "obs, _ = env.reset(seed=0)\n"
        "print(env.spec.id, obs.shape)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(ROOT), "MUJOCO_GL": "egl", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "mtm_robot/mujoco-pointmass-v0"


@pytest.mark.slow
def test_an_mtm_drives_a_gymnasium_env_through_the_client(tmp_path):
    """Plain gymnasium code with the shipped walker MTM answered by a node: over 60 steps
    it collects several times a random policy's reward."""
    from mtm_robot.serving.process import NodeProcess
    from mtm_robot_client import NodeClient

    env = gymnasium.make("mtm_robot/walker-walk-v0")
    node = NodeProcess(str(ROOT / "mtm_robot/checkpoints/walker-walk"), tmp_path / "node.log")
    node.start(ready_timeout_s=120)
    try:
        with NodeClient(node.endpoint, timeout_ms=10_000) as client:
            obs, _ = env.reset(seed=3)
            mtm_return = 0.0
            for _ in range(60):
                reply = client.act(
                    "return_conditioned", obs, return_target=1.0, return_target_units="normalized"
                )
                action = np.clip(reply.action, env.action_space.low, env.action_space.high)
                obs, reward, terminated, truncated, _ = env.step(action)
                mtm_return += float(reward)
                assert not (terminated or truncated)
    finally:
        node.stop()
    env.reset(seed=3)
    env.action_space.seed(0)
    random_return = sum(float(env.step(env.action_space.sample())[1]) for _ in range(60))
    assert mtm_return > 3 * random_return + 5, (mtm_return, random_return)
