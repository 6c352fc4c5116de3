"""A run whose loss becomes non-finite stops with a clear error and saves nothing of it."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from mtm_robot.errors import TrainingError
from mtm_robot.model.mtm import ModelConfig
from mtm_robot.training import train as train_module
from mtm_robot.training.train import TrainConfig, Trainer
from tests.synthetic import linear_episodes


def _config() -> TrainConfig:
    config = TrainConfig(
        model=ModelConfig(width=32, encoder_layers=1, decoder_layers=1, heads=2, dropout=0.0),
        steps=30,
        batch_size=16,
        eval_every=30,
        checkpoint_every=10,
    )
    config.optim.warmup_steps = 5
    return config


@pytest.mark.slow
def test_non_finite_loss_stops_the_run_and_writes_no_checkpoint_of_it(tmp_path, monkeypatch):
    real = train_module.reconstruction_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):  # the loss turns NaN from the 15th step on
        loss, parts = real(*args, **kwargs)
        calls["n"] += 1
        return (loss * float("nan"), parts) if calls["n"] >= 15 else (loss, parts)

    monkeypatch.setattr(train_module, "reconstruction_loss", poisoned)
    trainer = Trainer(_config(), linear_episodes(8, length=20), tmp_path)
    with pytest.raises(TrainingError, match=r"diverged at step 20: weight .* non-finite") as info:
        trainer.run(progress=False)
    assert "the last checkpoint is" in str(info.value) and "step_10" in str(info.value)
    saved = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert saved == ["latest", "step_10"], saved  # nothing after the loss went NaN
    for name in saved:
        state = load_file(str(tmp_path / "checkpoints" / name / "model.safetensors"))
        assert all(bool(torch.isfinite(t).all()) for t in state.values()), name


def test_a_loss_read_as_non_finite_stops_before_the_next_checkpoint(tmp_path, monkeypatch):
    real = train_module.reconstruction_loss

    def inf_loss(*args, **kwargs):  # the weights stay finite (no gradient); the loss is inf
        loss, parts = real(*args, **kwargs)
        return loss * 0 + float("inf") + 0 * loss.detach(), parts

    monkeypatch.setattr(train_module, "reconstruction_loss", inf_loss)
    config = _config()
    config.checkpoint_every = 30  # the loss is read at the last step, just before this save
    with pytest.raises(TrainingError, match="the loss is inf"):
        Trainer(config, linear_episodes(8, length=20), tmp_path).run(progress=False)
    assert not (tmp_path / "checkpoints").exists()
