"""A robot is not a MuJoCo simulator: a plain-Python plant runs the whole control path.

The plant (:mod:`tests.controllers.plant`) has the walker's shapes (24-d observation, 6-d
action) and no physics state. It goes through the same interface checks as a simulator
adapter, then through the controller and a real inference node process: lockstep with an I/O
map and a recording, realtime with every deadline missed (the fallback ladder), and a whole
session in an interpreter where MuJoCo and torch cannot be imported.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from controllers.fallback import FallbackConfig
from controllers.io_map import ActionChannel, IOMap, describe_env, save_io_map
from controllers.loop import Controller, ControllerConfig
from controllers.robot import DescribedRobot, Robot
from controllers.session import SessionConfig, run_session
from mtm_robot.data.episodes import episode_paths, load_episode
from mtm_robot.serving.process import NodeProcess
from mtm_robot_client import NodeClient

from .plant import PointMassPlant

ROOT = Path(__file__).resolve().parents[2]


def _plant_checkpoint(path: Path) -> Path:
    """A tiny random MTM of the plant's dims (24-d states, 6-d actions)."""
    import torch

    from mtm_robot.data.normalize import Normalizer
    from mtm_robot.model.mtm import MTM, DataSpec, ModelConfig
    from mtm_robot.training.checkpoint import save_checkpoint

    torch.manual_seed(0)
    spec = DataSpec({"states": 24, "actions": 6, "returns": 1}, 4)
    model = MTM(spec, ModelConfig(width=16, encoder_layers=1, decoder_layers=1, heads=2))
    rng = np.random.default_rng(0)
    norm = Normalizer.fit({n: rng.normal(size=(64, k)) for n, k in spec.modalities.items()})
    meta = {
        "model_id": "tiny-plant",
        "task": PointMassPlant.task,
        "return_stats": {"return_min": 0.1, "return_max": 0.9},
    }
    save_checkpoint(path, model.eval(), norm, meta)
    return path


@pytest.fixture(scope="module")
def plant_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _plant_checkpoint(tmp_path_factory.mktemp("ck") / "plant")


@pytest.fixture(scope="module")
def node(plant_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real node process serving the plant's model; yields its endpoint."""
    process = NodeProcess(str(plant_checkpoint), tmp_path_factory.mktemp("node") / "node.log")
    process.start(ready_timeout_s=120)
    yield process.endpoint
    process.stop()


def _sim_pointmass() -> Any:  # a SimEnv
    from sim import registry

    return registry.make("mujoco-pointmass")


ROBOTS: dict[str, Callable[[], Robot]] = {
    "plain-plant": lambda: PointMassPlant(steps=5),
    "mujoco-sim": _sim_pointmass,
}


@pytest.mark.parametrize("make", list(ROBOTS.values()), ids=list(ROBOTS))
def test_a_plant_and_a_simulator_satisfy_one_interface(make: Callable[[], Robot]) -> None:
    robot = make()
    assert isinstance(robot, DescribedRobot)
    obs, _ = robot.reset(seed=3)
    assert obs.shape == (robot.observation_dim,) and np.all(np.isfinite(obs))
    low, high = np.asarray(robot.action_low), np.asarray(robot.action_high)
    assert low.shape == high.shape == (robot.action_dim,) and np.all(low < high)
    assert robot.control_hz > 0
    obs, reward, terminated, truncated, _ = robot.step((low + high) / 2)
    assert obs.shape == (robot.observation_dim,)
    assert reward is None or math.isfinite(reward)
    assert isinstance(terminated, bool) and isinstance(truncated, bool)
    with pytest.raises(ValueError, match=r"never clipped|in \[-1, 1\]"):
        robot.step(high + 1.0)  # a robot refuses an action outside its bounds
    fields, actuators = describe_env(robot)
    assert sum(size for _, size in fields) == robot.observation_dim
    assert len(actuators) == robot.action_dim
    physics = robot.get_physics_state()
    assert physics is None or (physics.ndim == 1 and np.all(np.isfinite(physics)))
    robot.close()
    robot.close()


@dataclass
class _Reply:
    action: np.ndarray
    action_chunk: np.ndarray = field(default_factory=lambda: np.zeros((0, 6)))
    next_states: np.ndarray = field(default_factory=lambda: np.zeros((0, 24)))
    model_id: str = "instant"
    ok: bool = True


class _Instant:
    """Answers every request at once with the neutral action."""

    def __init__(self, action_dim: int) -> None:
        self.action_dim = action_dim

    def submit(self, mode: str, state: np.ndarray, **fields: Any) -> int:
        return 1

    def poll(self, request_id: int, timeout_ms: float = 0.0) -> _Reply:
        return _Reply(np.zeros(self.action_dim))

    def abandon(self, request_id: int) -> None:
        pass


def test_the_loop_reads_the_physics_state_only_when_something_keeps_it() -> None:
    config = ControllerConfig(mode="behavior_cloning", realtime=False, max_steps=10)
    plant = PointMassPlant()
    result = Controller(plant, _Instant(6), config).run_episode(0)
    assert result.ticks == 10 and plant.physics_reads == 0 and result.physics is None
    result = Controller(plant, _Instant(6), config, keep_physics=True).run_episode(0)
    assert plant.physics_reads == 10 and result.physics is None  # asked, and it has none
    sim = _sim_pointmass()
    try:
        kept = Controller(sim, _Instant(2), config, keep_physics=True).run_episode(0)
        assert kept.physics is not None and kept.physics.shape == (10, sim.physics_dim)
        assert Controller(sim, _Instant(2), config).run_episode(0).physics is None
    finally:
        sim.close()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_session_drives_the_plant_through_a_real_node(node: str, tmp_path: Path) -> None:
    """Lockstep, an I/O map (a flipped motor, a rate limit) and a recording, on any Robot."""
    io_map = IOMap.identity(
        PointMassPlant.task,
        list(zip(PointMassPlant.observation_names, PointMassPlant.observation_sizes, strict=True)),
        PointMassPlant.actuator_names,
    )
    io_map.action[0] = ActionChannel("motor0", scale=-1.0)
    io_map.action[1] = ActionChannel("motor1", max_delta=0.05)
    save_io_map(io_map, tmp_path / "map.yaml")
    config = SessionConfig(
        server=node,
        episodes=2,
        io_map=str(tmp_path / "map.yaml"),
        record=str(tmp_path / "rec"),
        controller=ControllerConfig(realtime=False, max_steps=25),
    )
    plant = PointMassPlant()
    result = run_session(config, tmp_path / "run", progress=False, robot=plant)

    assert result.task == "pointmass-reach" and not result.ended_by
    assert [s["ticks"] for s in result.summaries] == [25, 25]
    assert all(s["deadline_misses"] == 0 for s in result.summaries)
    assert all(s["models"] == ["tiny-plant"] for s in result.summaries)
    assert all(math.isnan(s["normalized_score"]) for s in result.summaries)  # no registry score
    assert config.controller.target_return == pytest.approx(0.9)  # the top of return_stats
    assert not plant.closed  # a robot passed in stays the caller's
    # the plant received exactly the model actions through the map: motor0 flipped
    model_actions = np.concatenate([e.actions for e in result.episodes])
    commands = np.stack(plant.applied)
    np.testing.assert_allclose(commands[:, 0], -model_actions[:, 0])
    np.testing.assert_allclose(commands[:, 1:], model_actions[:, 1:])
    for episode in result.episodes:  # the map's rate limit, on every action
        assert episode.physics is None
        assert np.abs(np.diff(episode.actions, axis=0)).max() <= 0.05 + 1e-9
    paths = episode_paths(tmp_path / "rec")
    assert len(paths) == 2
    recorded = load_episode(paths[0])
    assert recorded.actions is not None and recorded.actions.shape == (25, 6)
    assert recorded.states.shape == (25, 24)
    assert recorded.rewards is not None and recorded.physics is None
    assert recorded.meta["task"] == "pointmass-reach"
    np.testing.assert_allclose(recorded.actions, result.episodes[0].actions, atol=1e-6)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_realtime_misses_fall_back_and_late_replies_are_never_applied(node: str) -> None:
    """Every deadline missed (the budget ends before the tick starts): the fallback ladder
    answers each tick; a lockstep run on the same link afterwards gets only its own replies."""
    plant = PointMassPlant()
    ladder = FallbackConfig(hold_ticks=2, decay_ticks=3, safe_after_misses=8)
    with NodeClient(node, timeout_ms=5000) as client:
        client.wait_ready(timeout_s=30)
        missed = ControllerConfig(
            mode="behavior_cloning",
            control_hz=200.0,
            deadline_margin_ms=10.0,  # > the 5 ms period: no time is left for a reply
            fallback=ladder,
            max_steps=12,
        )
        safe = np.full(6, 0.5)
        result = Controller(plant, client, missed, safe_action=safe).run_episode(1)
        levels = result.telemetry.level
        assert levels == ["hold"] * 2 + ["decay"] * 5 + ["safe"] * 5
        assert np.isnan(result.telemetry.latency_s).all()
        np.testing.assert_allclose(result.actions[:7], 0.0)  # held and decayed at neutral
        np.testing.assert_allclose(result.actions[7:], 0.5)
        np.testing.assert_allclose(np.stack(plant.applied), result.actions)

        lockstep = ControllerConfig(mode="behavior_cloning", realtime=False, max_steps=10)
        after = Controller(plant, client, lockstep).run_episode(2)
        assert after.telemetry.level == ["model"] * 10
        assert not np.allclose(after.actions, 0.5)


_NO_SIMULATOR = """
import json, math, sys
from pathlib import Path
for name in ("mujoco", "dm_control", "gymnasium", "torch"):
    sys.modules[name] = None  # importing them now raises ImportError: a robot computer
from controllers.loop import ControllerConfig
from controllers.session import SessionConfig, run_session
from mtm_robot.data.episodes import episode_paths, load_episode
from tests.controllers.plant import PointMassPlant

checkpoint, out = sys.argv[1], Path(sys.argv[2])
config = SessionConfig(
    checkpoint=checkpoint,  # the session starts its own node process
    episodes=1,
    record=str(out / "rec"),
    controller=ControllerConfig(realtime=False, max_steps=15),
)
plant = PointMassPlant(rewards=False)
result = run_session(config, out / "run", progress=False, robot=plant)
episode = load_episode(episode_paths(out / "rec")[0])
print(json.dumps({
    "ticks": result.summaries[0]["ticks"],
    "misses": result.summaries[0]["deadline_misses"],
    "models": result.summaries[0]["models"],
    "return_is_nan": math.isnan(result.episodes[0].episode_return),
    "recorded_rewards": episode.rewards is not None,
    "recorded_actions": list(episode.actions.shape),
    "applied": len(plant.applied),
    "loaded": sorted(m for m in ("mujoco", "torch", "sim", "calibration")
                     if sys.modules.get(m) is not None),
}))
"""


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_whole_session_runs_where_mujoco_and_torch_cannot_be_imported(
    plant_checkpoint: Path, tmp_path: Path
) -> None:
    run = subprocess.run(
        [sys.executable, "-c", _NO_SIMULATOR, str(plant_checkpoint), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=200,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out == {
        "ticks": 15,
        "misses": 0,
        "models": ["tiny-plant"],
        "return_is_nan": True,  # a robot without rewards: the return is unknown
        "recorded_rewards": False,  # absent, never zero-filled
        "recorded_actions": [15, 6],
        "applied": 15,
        "loaded": [],
    }
