from __future__ import annotations

import numpy as np
import pytest
import torch

from mtm_robot.errors import SpecMismatchError
from mtm_robot.model import masks
from mtm_robot.model.mtm import MTM, DataSpec, ModelConfig, reconstruction_loss


def _inputs(spec: DataSpec, batch: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {
        n: torch.randn(batch, spec.segment_length, k, generator=g)
        for n, k in spec.modalities.items()
    }


def _randomise(model: MTM) -> None:
    # mask tokens and modality embeddings start at zero; make them matter for the test
    with torch.no_grad():
        for p in (model.enc_modality, model.dec_modality, model.mask_token):
            p.normal_()


def _reference_visible_outputs(model, inputs, mask):
    """The reference formulation: keep only visible tokens, run the encoder on them."""
    tokens = model._tokens(inputs)
    index = torch.cat([torch.as_tensor(mask[n]) for n in model.names]).nonzero().squeeze(1)
    x = tokens[:, index]
    for block in model.encoder:
        x = block(x)
    return model.encoder_norm(x)


def test_per_sample_masks_equal_drop_the_masked_tokens(tiny_model, tiny_spec):
    _randomise(tiny_model)
    rng = np.random.default_rng(0)
    names = list(tiny_spec.modalities)
    cases = [
        masks.random_autoregressive(
            names, 4, rng, [0.5, 1.0], {"states": 0.2, "returns": 0.1, "actions": 0.7}
        )
        for _ in range(30)
    ]
    cases = [m for m in cases if any(v.any() for v in m.values())][:8]
    inputs = _inputs(tiny_spec, len(cases))
    batch_mask = {n: torch.as_tensor(v) for n, v in masks.stack_masks(cases).items()}
    with torch.no_grad():
        padded_encoded = tiny_model.encode(inputs, batch_mask)
        padded_out = tiny_model(inputs, batch_mask)
        for i, case in enumerate(cases):
            one = {n: v[i : i + 1] for n, v in inputs.items()}
            reference = _reference_visible_outputs(tiny_model, one, case)
            visible = torch.cat([torch.as_tensor(case[n]) for n in names])
            torch.testing.assert_close(
                padded_encoded[i, visible], reference[0], atol=1e-5, rtol=1e-5
            )
            shared = tiny_model(one, {n: torch.as_tensor(v) for n, v in case.items()})
            for n in names:
                torch.testing.assert_close(padded_out[n][i], shared[n][0], atol=1e-5, rtol=1e-5)


def test_masked_inputs_do_not_leak(tiny_model, tiny_spec):
    _randomise(tiny_model)
    inputs = _inputs(tiny_spec, 2)
    mask = masks.return_conditioned(list(tiny_spec.modalities), 4, 1)
    per_sample = {n: torch.as_tensor(v).expand(2, 4) for n, v in mask.items()}
    changed = {n: v.clone() for n, v in inputs.items()}
    changed["actions"][:, 1:] += 100.0  # masked slots
    changed["states"][:, 2:] -= 50.0
    with torch.no_grad():
        a, b = tiny_model(inputs, per_sample), tiny_model(changed, per_sample)
    for n in a:
        torch.testing.assert_close(a[n], b[n])
    changed["states"][:, 0] += 1.0  # a visible slot must change the output
    with torch.no_grad():
        c = tiny_model(changed, per_sample)
    assert not torch.allclose(a["actions"], c["actions"])


def test_all_masked_sample_is_finite(tiny_model, tiny_spec):
    inputs = _inputs(tiny_spec, 3)
    mask = {n: torch.zeros(3, 4, dtype=torch.bool) for n in tiny_spec.modalities}
    mask["states"][1, 0] = True  # a mixed batch: one sample with a visible token
    out = tiny_model(inputs, mask)
    assert all(torch.isfinite(v).all() for v in out.values())
    shared = tiny_model(inputs, {n: torch.zeros(4, dtype=torch.bool) for n in tiny_spec.modalities})
    assert all(torch.isfinite(v).all() for v in shared.values())


@pytest.mark.parametrize(
    "modalities", [{"states": 3}, {"states": 7, "actions": 1, "rewards": 1, "returns": 1}]
)
def test_any_modalities_and_lengths(modalities):
    spec = DataSpec(modalities, segment_length=6)
    model = MTM(spec, ModelConfig(width=16, heads=2, encoder_layers=1, decoder_layers=1))
    inputs = _inputs(spec, 2)
    mask = masks.random(list(modalities), 6, np.random.default_rng(0), [0.5])
    out = model(inputs, {n: torch.as_tensor(v) for n, v in mask.items()})
    assert {n: tuple(v.shape) for n, v in out.items()} == {
        n: (2, 6, k) for n, k in modalities.items()
    }
    loss, parts = reconstruction_loss(out, inputs)
    loss.backward()
    assert set(parts) == set(modalities) and torch.isfinite(loss)


def test_shape_mismatch_names_the_modality(tiny_model, tiny_spec):
    inputs = _inputs(tiny_spec, 2)
    inputs["actions"] = torch.zeros(2, 4, 3)
    mask = {n: torch.ones(4, dtype=torch.bool) for n in tiny_spec.modalities}
    with pytest.raises(SpecMismatchError, match=r"actions: expected shape \(B, 4, 2\)"):
        tiny_model(inputs, mask)


def test_loss_weights_drop_missing_modalities():
    pred = {"actions": torch.zeros(2, 4, 1)}
    target = {"actions": torch.tensor([[[1.0]] * 4, [[3.0]] * 4])}
    _, parts = reconstruction_loss(pred, target, {"actions": torch.tensor([1.0, 0.0])})
    assert parts["actions"].item() == pytest.approx(1.0)


def test_weight_decay_only_on_linear_weights(tiny_model):
    decay, no_decay = tiny_model.parameter_groups(0.01)
    decay_ids = {id(p) for p in decay["params"]}
    assert id(tiny_model.mask_token) not in decay_ids
    assert id(tiny_model.heads["states"].out.weight) in decay_ids
    assert id(tiny_model.heads["states"].out.bias) not in decay_ids
    total = len(decay["params"]) + len(no_decay["params"])
    assert total == len(list(tiny_model.parameters()))
