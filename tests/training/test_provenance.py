"""What a checkpoint records about where its data came from: the task and the action bounds."""

from __future__ import annotations

from mtm_robot.checkpoint_meta import read_metadata
from mtm_robot.training.train import Trainer, episode_action_bounds, episode_task
from tests.synthetic import ACTION_DIM, linear_episodes
from tests.training.test_train import _config


def _bounded(n: int, low: float = -1.0, high: float = 1.0, **kw):  # type: ignore[no-untyped-def]
    episodes = linear_episodes(n, length=12, **kw)
    for e in episodes:
        e.meta.update(action_low=[low] * ACTION_DIM, action_high=[high] * ACTION_DIM)
    return episodes


def test_the_task_and_action_bounds_of_the_data_reach_the_checkpoint(tmp_path):
    Trainer(_config(2), _bounded(4), tmp_path / "run").run(progress=False)
    meta = read_metadata(tmp_path / "run" / "checkpoints" / "latest")
    assert meta["task"] == "linear"  # the config left task empty: taken from the episodes
    assert meta["action_bounds"] == {"low": [-1.0] * ACTION_DIM, "high": [1.0] * ACTION_DIM}


def test_a_finetune_keeps_its_source_bounds_when_its_data_records_none(tmp_path):
    Trainer(_config(2), _bounded(4, low=-2.0, high=2.0), tmp_path / "base").run(progress=False)
    base = tmp_path / "base" / "checkpoints" / "latest"
    unbounded = linear_episodes(4, length=12, seed=3)
    for e in unbounded:
        e.meta.pop("task")
    Trainer(_config(2), unbounded, tmp_path / "ft", init_from=base).run(progress=False)
    meta = read_metadata(tmp_path / "ft" / "checkpoints" / "latest")
    assert meta["task"] == "linear"
    assert meta["action_bounds"]["high"] == [2.0] * ACTION_DIM


def test_disagreeing_or_malformed_bounds_are_not_recorded():
    mixed = _bounded(2) + _bounded(2, low=-3.0, high=3.0)
    assert episode_action_bounds(mixed, ACTION_DIM) is None
    assert episode_action_bounds(_bounded(2), ACTION_DIM + 1) is None
    assert episode_action_bounds(linear_episodes(2, length=12), ACTION_DIM) is None
    two_tasks = linear_episodes(2, length=12)
    two_tasks[1].meta["task"] = "other"
    assert episode_task(two_tasks) == ""


def test_stacked_members_record_what_a_trainer_would(tmp_path):
    """The stacked trainer writes the Trainer's metadata (one builder): its task and bounds."""
    from mtm_robot.training.stacked import Member, StackedTrainer

    members = [
        Member(0, _bounded(4), tmp_path / "m0"),
        Member(1, _bounded(4, seed=1), tmp_path / "m1"),
    ]
    StackedTrainer(_config(2), members).run(progress=False)
    alone = tmp_path / "alone"
    Trainer(_config(2), _bounded(4), alone).run(progress=False)
    single = read_metadata(alone / "checkpoints" / "latest")
    for m in ("m0", "m1"):
        meta = read_metadata(tmp_path / m / "checkpoints" / "latest")
        assert meta["task"] == "linear"
        assert meta["action_bounds"] == {"low": [-1.0] * ACTION_DIM, "high": [1.0] * ACTION_DIM}
        assert meta.keys() == single.keys()
        assert meta["provenance"]["stacked"]["members"] == 2
