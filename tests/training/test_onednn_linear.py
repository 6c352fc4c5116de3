from __future__ import annotations

import pytest
import torch
from torch import nn

from mtm_robot.model.mtm import ModelConfig
from mtm_robot.training import onednn_linear
from mtm_robot.training.onednn_linear import OneDNNLinearMode
from mtm_robot.training.train import TrainConfig, Trainer
from tests.synthetic import linear_episodes

pytestmark = pytest.mark.skipif(not onednn_linear.available(), reason="no oneDNN in this torch")


def _grads(model: nn.Module, x: torch.Tensor, mode: bool) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    if mode:
        with OneDNNLinearMode():
            out = model(x)
    else:
        out = model(x)
    (out.square().mean()).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert x.grad is not None and len(grads) == len(list(model.parameters()))
    grads["input"] = x.grad.clone()
    return out.detach(), grads


@pytest.mark.parametrize("shape", [(7, 24), (5, 4, 24), (1, 24)])
def test_linear_on_onednn_equals_torch_in_value_and_gradient(shape):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(24, 64), nn.GELU(), nn.Linear(64, 1), nn.Linear(1, 3))
    x = torch.randn(*shape)
    want, want_grads = _grads(model, x, mode=False)
    got, got_grads = _grads(model, x, mode=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for name, grad in want_grads.items():
        torch.testing.assert_close(got_grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_linear_without_bias_and_frozen_input():
    torch.manual_seed(0)
    layer = nn.Linear(16, 8, bias=False)
    x = torch.randn(6, 16)
    with OneDNNLinearMode():
        out = layer(x)
    assert type(out.grad_fn).__name__ == "_LinearBackward"  # it took the oneDNN path
    out.sum().backward()
    torch.testing.assert_close(layer.weight.grad, torch.ones(6, 8).t() @ x)


def test_empty_bf16_and_autocast_inputs_keep_torchs_path():
    layer = nn.Linear(16, 8)
    with OneDNNLinearMode():
        empty = layer(torch.zeros(4, 0, 16))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cast = layer(torch.randn(3, 16))
        half = layer.to(torch.bfloat16)(torch.randn(3, 16, dtype=torch.bfloat16))
    assert empty.shape == (4, 0, 8)
    assert cast.dtype == half.dtype == torch.bfloat16
    for out in (cast, half):
        assert type(out.grad_fn).__name__ != "_LinearBackward"


def _trainer(tmp_path, precision: str, fp32_linear: str) -> Trainer:
    config = TrainConfig(
        model=ModelConfig(width=32, encoder_layers=1, decoder_layers=1, heads=2, dropout=0.0),
        steps=10,
        batch_size=16,
        precision=precision,
        fp32_linear=fp32_linear,
    )
    return Trainer(config, linear_episodes(6, length=20), tmp_path)


@pytest.mark.parametrize(
    ("precision", "fp32_linear", "used"),
    [("fp32", "onednn", True), ("fp32", "torch", False), ("bf16", "onednn", False)],
)
def test_the_trainer_runs_fp32_linear_layers_on_onednn_unless_told_not(
    tmp_path, monkeypatch, precision, fp32_linear, used
):
    calls = []
    apply = onednn_linear._Linear.apply

    def counting(*args):
        calls.append(args[0].shape)
        return apply(*args)

    monkeypatch.setattr(onednn_linear._Linear, "apply", counting)
    record = _trainer(tmp_path, precision, fp32_linear).train_step()
    assert bool(calls) is used
    assert record["loss"] == pytest.approx(record["loss"])  # finite


def test_fp32_steps_on_onednn_follow_torchs_within_rounding(tmp_path):
    a = _trainer(tmp_path / "a", "fp32", "onednn")
    b = _trainer(tmp_path / "b", "fp32", "torch")
    for _ in range(3):
        torch.manual_seed(123)  # the same dropout stream for both (dropout is 0 here anyway)
        la, lb = a.train_step()["loss"], b.train_step()["loss"]
        assert la == pytest.approx(lb, rel=1e-4)
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-5, msg=name)
