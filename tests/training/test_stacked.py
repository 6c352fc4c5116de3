"""Stacked training equals separate training, and its checkpoints are ordinary ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mtm_robot.errors import ConfigError
from mtm_robot.inference import Predictor
from mtm_robot.model.masks import MaskConfig
from mtm_robot.model.mtm import ModelConfig
from mtm_robot.training.checkpoint import load_checkpoint
from mtm_robot.training.stacked import Member, StackedTrainer
from mtm_robot.training.train import TrainConfig, Trainer
from tests.synthetic import linear_episodes

STEPS = 30


def _config(steps: int = STEPS) -> TrainConfig:
    c = TrainConfig(
        model=ModelConfig(width=32, encoder_layers=1, decoder_layers=1, heads=2, dropout=0.0),
        masks=MaskConfig(
            patterns={"random_autoregressive": 1.0, "inverse_dynamics": 0.5, "goal": 0.25}
        ),
        steps=steps,
        batch_size=16,
        eval_every=steps,
        checkpoint_every=steps,
        precision="fp32",
    )
    c.optim.warmup_steps = 5
    c.optim.lr = 3e-3
    return c


def _members(root) -> list[Member]:
    plain = linear_episodes(8, length=20, seed=0)
    mixed = linear_episodes(10, length=20, seed=1, action_free=5)  # heteromodal batches too
    return [
        Member(0, plain, root / "m0"),
        Member(1, plain, root / "m1"),
        Member(2, mixed, root / "m2"),
    ]


@pytest.mark.slow
def test_stacked_loss_curves_and_checkpoints_equal_separate_training(tmp_path):
    members = _members(tmp_path / "stacked")
    separate = []
    for m in members:
        trainer = Trainer(_seeded(_config(), m.seed), m.episodes, tmp_path / f"alone{m.seed}")
        separate.append((trainer, [trainer.train_step() for _ in range(STEPS)]))
    stacked = StackedTrainer(_config(), members, chunk_size=2)  # chunks of 2 and 1 members
    curves = [stacked.train_step() for _ in range(STEPS)]  # STEPS x K records
    for i, (_, alone) in enumerate(separate):
        want = np.array([r["loss"] for r in alone])
        got = np.array([step[i]["loss"] for step in curves])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        assert [step[i]["labelled"] for step in curves] == [r["labelled"] for r in alone]
        assert curves[-1][i]["lr"] == pytest.approx(alone[-1]["lr"])
    assert min(r["labelled"] for r in separate[2][1]) == 0.0  # action-free batches were drawn
    # the members' losses differ: they are three runs, not one copied
    assert len({round(curves[-1][i]["loss"], 6) for i in range(3)}) == 3

    # every member's checkpoint loads as an ordinary one and predicts as its separate twin
    stacked.save()
    rng = np.random.default_rng(0)
    state, target = rng.normal(size=4), 0.0
    for i, (trainer, _) in enumerate(separate):
        loaded = load_checkpoint(members[i].out_dir / "checkpoints" / "latest")
        assert loaded.metadata["step"] == STEPS
        assert loaded.metadata["training"]["seed"] == members[i].seed
        assert loaded.metadata["provenance"]["stacked"] == {"members": 3, "index": i}
        assert loaded.normalizer.to_dict() == trainer.data.normalizer.to_dict()
        got = Predictor.from_model(loaded.model, loaded.normalizer).predict(
            mode="return_conditioned", state=state, return_target=target
        )
        want = Predictor.from_model(trainer.model, trainer.data.normalizer).predict(
            mode="return_conditioned", state=state, return_target=target
        )
        np.testing.assert_allclose(got.action, want.action, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_a_stacked_run_resumes_where_it_stopped(tmp_path):
    straight = StackedTrainer(_config(12), _members(tmp_path / "a"))
    want = [straight.train_step() for _ in range(12)]
    half = _config(6)
    first = StackedTrainer(half, _members(tmp_path / "b"))
    for _ in range(6):
        first.train_step()
    first.save()
    again = StackedTrainer(_config(12), _members(tmp_path / "b"))
    assert again.step == 6
    got = [again.train_step() for _ in range(6)]
    for w, g in zip(want[6:], got):
        np.testing.assert_allclose([r["loss"] for r in g], [r["loss"] for r in w], rtol=1e-5)
    # a member's checkpoint also resumes as a plain single-model run, on the same curve
    alone = Trainer(
        _seeded(_config(12), 1), _members(tmp_path / "b")[1].episodes, tmp_path / "b" / "m1"
    )
    assert alone.step == 6
    np.testing.assert_allclose(alone.train_step()["loss"], want[6][1]["loss"], rtol=1e-4)


def _seeded(config: TrainConfig, seed: int) -> TrainConfig:
    return dataclasses.replace(config, seed=seed)


def test_members_must_share_one_data_spec_and_have_their_own_directories(tmp_path):
    a = linear_episodes(4, length=20)
    with pytest.raises(ConfigError, match="own out_dir"):
        StackedTrainer(_config(), [Member(0, a, tmp_path / "x"), Member(1, a, tmp_path / "x")])
    wide = linear_episodes(4, length=20)
    for e in wide:
        e.states = np.concatenate([e.states, e.states], axis=1)
    with pytest.raises(ConfigError, match="one data spec"):
        StackedTrainer(_config(), [Member(0, a, tmp_path / "y"), Member(1, wide, tmp_path / "z")])


@pytest.mark.slow
def test_run_logs_validates_and_checkpoints_every_member(tmp_path):
    config = _config(4)
    config.model.dropout = 0.1  # the loop with dropout: members still train and save
    stacked = StackedTrainer(config, _members(tmp_path))
    metrics = stacked.run(progress=False)
    assert len(metrics) == 3 and all("inverse_dynamics_error" in m for m in metrics)
    for member in _members(tmp_path):
        rows = (member.out_dir / "metrics.jsonl").read_text().splitlines()
        assert rows and all('"step": 4' in row for row in rows)
        assert load_checkpoint(member.out_dir / "checkpoints" / "step_4").metadata["step"] == 4
