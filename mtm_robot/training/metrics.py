"""Held-out metrics (reference 5.5): masked reconstruction and normalised ID/FD/BC errors."""

from __future__ import annotations

import numpy as np
import torch

from mtm_robot.data.normalize import Normalizer
from mtm_robot.model import masks as mask_lib
from mtm_robot.model.mtm import MTM, reconstruction_loss


def _forward(
    model: MTM, normalizer: Normalizer, raw: dict[str, np.ndarray], mask: mask_lib.Mask
) -> dict[str, np.ndarray]:
    """Shared-mask forward on raw windows; returns raw-unit predictions."""
    device = next(model.parameters()).device
    x = {n: torch.from_numpy(normalizer.normalize(n, v)).to(device) for n, v in raw.items()}
    m = {n: torch.from_numpy(v).to(device) for n, v in mask.items()}
    with torch.no_grad():
        out = model(x, m)
    return {n: normalizer.denormalize(n, v.float().cpu().numpy()) for n, v in out.items()}


@torch.no_grad()
def evaluate(
    model: MTM,
    normalizer: Normalizer,
    windows: dict[str, np.ndarray],
    stats: dict[str, float],
    seed: int = 0,
    max_windows: int = 2048,
) -> dict[str, float]:
    """Metrics on raw validation windows (name -> (N, L, k)); the model is put in eval mode.

    * ``val_loss/<modality>``: normalised MSE on all tokens under one fixed
      random-autoregressive mask per call (the same for a given seed);
    * ``inverse_dynamics_error``: all states visible, predict a_{L-2}; MSE / mean (a_{t+1}-a_t)^2;
    * ``forward_dynamics_error``: states 0..L-2 and a_{L-2} visible, predict s_{L-1};
      MSE / mean (s_{t+1}-s_t)^2;
    * ``behavior_cloning_error``: only s_0 visible, predict a_0; MSE / action variance.
    """
    was_training = model.training
    model.eval()
    names = model.names
    L = model.spec.segment_length
    raw = {n: v[:max_windows] for n, v in windows.items() if n in names}
    rng = np.random.default_rng(seed)
    mask = mask_lib.random_autoregressive(
        names, L, rng, mask_lib.DEFAULT_KEEP_RATIOS, mask_lib.DEFAULT_MODALITY_WEIGHTS
    )
    device = next(model.parameters()).device
    x = {n: torch.from_numpy(normalizer.normalize(n, v)).to(device) for n, v in raw.items()}
    out = model(x, {n: torch.from_numpy(v).to(device) for n, v in mask.items()})
    total, parts = reconstruction_loss(out, x)
    metrics = {"val_loss": float(total)}
    metrics.update({f"val_loss/{n}": float(v) for n, v in parts.items()})
    if "actions" in names and L >= 2:
        inv = mask_lib.inverse_dynamics(names, L)
        pred = _forward(model, normalizer, raw, inv)["actions"][:, L - 2]
        err = float(np.mean((pred - raw["actions"][:, L - 2]) ** 2))
        metrics["inverse_dynamics_error"] = err / stats.get("action_delta_sq", 1.0)
        fd = {n: np.zeros(L, dtype=bool) for n in names}
        fd["states"][: L - 1] = True
        fd["actions"][L - 2] = True
        pred = _forward(model, normalizer, raw, fd)["states"][:, L - 1]
        err = float(np.mean((pred - raw["states"][:, L - 1]) ** 2))
        metrics["forward_dynamics_error"] = err / stats.get("state_delta_sq", 1.0)
        bc = mask_lib.behavior_cloning(names, L, 0)
        pred = _forward(model, normalizer, raw, bc)["actions"][:, 0]
        err = float(np.mean((pred - raw["actions"][:, 0]) ** 2))
        metrics["behavior_cloning_error"] = err / max(stats.get("action_var", 1.0), 1e-12)
    model.train(was_training)
    return metrics
