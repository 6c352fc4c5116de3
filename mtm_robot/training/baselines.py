"""Specialised MLP baselines (reference 5.6): one network per capability.

* ``behavior_cloning``: s_t -> a_t
* ``return_conditioned``: (s_t, R_t) -> a_t
* ``inverse_dynamics``: (s_t, s_{t+1}) -> a_t
* ``forward_dynamics``: (s_t, a_t) -> s_{t+1} (the correct action; the reference code used
  a_{t+1}, see reference gotcha 12)

They train on the same segments (length 2) and normalisation as the MTM, and report the same
normalised held-out errors, so the paper's comparison can run on any dataset.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from tqdm import tqdm

from mtm_robot.config import at_least, one_of, positive, to_dict
from mtm_robot.data.episodes import Episode
from mtm_robot.data.normalize import Normalizer
from mtm_robot.data.segments import DataConfig, build_dataset
from mtm_robot.hardware import torch_device
from mtm_robot.training import BASELINE_TASKS

_IO = {  # task -> (inputs as (modality, slot), output (modality, slot), error normaliser)
    "behavior_cloning": ([("states", 0)], ("actions", 0), "action_var"),
    "return_conditioned": ([("states", 0), ("returns", 0)], ("actions", 0), "action_var"),
    "inverse_dynamics": ([("states", 0), ("states", 1)], ("actions", 0), "action_delta_sq"),
    "forward_dynamics": ([("states", 0), ("actions", 0)], ("states", 1), "state_delta_sq"),
}


@dataclass
class BaselineConfig:
    hidden: int = 1024
    layers: int = 2
    lr: float = 2e-4
    weight_decay: float = 0.005
    steps: int = 20_000
    batch_size: int = 1024
    eval_every: int = 2000
    seed: int = 0
    device: str = "cpu"  # cpu | cuda | auto
    data: DataConfig = field(default_factory=lambda: DataConfig(segment_length=2))

    def __post_init__(self) -> None:
        at_least(1, hidden=self.hidden, layers=self.layers, steps=self.steps)
        at_least(1, batch_size=self.batch_size, eval_every=self.eval_every)
        at_least(0, weight_decay=self.weight_decay, seed=self.seed)
        positive(lr=self.lr)
        one_of("device", self.device, ("auto", "cpu", "cuda"))


class MLP(nn.Module):
    """Linear -> GELU -> ... -> Linear."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * layers
        blocks: list[nn.Module] = []
        for a, b in itertools.pairwise(dims):
            blocks += [nn.Linear(a, b), nn.GELU()]
        blocks.append(nn.Linear(dims[-1], out_dim))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _io(task: str, windows: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    inputs, (out_name, out_slot), _ = _IO[task]
    x = np.concatenate([windows[n][:, slot] for n, slot in inputs], axis=1)
    return x.astype(np.float32), windows[out_name][:, out_slot].astype(np.float32)


def train_baseline(
    task: str,
    config: BaselineConfig,
    episodes: Sequence[Episode],
    out_dir: str | Path,
    provenance: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Train one baseline; returns its held-out normalised error (``<task>_error``)."""
    if task not in _IO:
        raise ValueError(f"unknown baseline task '{task}'; known: {BASELINE_TASKS}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = build_dataset([e for e in episodes if e.actions is not None], config.data)
    group = data.groups["labelled"]
    val = {n: data.normalizer.normalize(n, v) for n, v in data.validation.items()}
    val_x, val_y = _io(task, val)
    out_name = _IO[task][1][0]
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch_device(config.device)
    model = MLP(val_x.shape[1], val_y.shape[1], config.hidden, config.layers).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )

    def held_out() -> float:
        model.eval()
        with torch.no_grad():
            pred = model(torch.from_numpy(val_x).to(device)).cpu().numpy()
        model.train()
        raw_pred = data.normalizer.denormalize(out_name, pred)
        raw_true = data.normalizer.denormalize(out_name, val_y)
        return float(np.mean((raw_pred - raw_true) ** 2)) / data.stats.get(_IO[task][2], 1.0)

    metrics: dict[str, float] = {}
    with open(out / "metrics.jsonl", "a") as log:
        for step in tqdm(range(1, config.steps + 1), disable=not progress, desc=f"mlp-{task}"):
            x, y = _io(task, group.sample(rng, config.batch_size))
            prediction = model(torch.from_numpy(x).to(device, non_blocking=True))
            loss = nn.functional.mse_loss(prediction, torch.from_numpy(y).to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % config.eval_every == 0 or step == config.steps:
                metrics = {f"{task}_error": held_out(), "loss": float(loss.detach())}
                log.write(json.dumps({"step": step, **metrics}) + "\n")
                log.flush()
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        str(out / "baseline.safetensors"),
    )
    meta = {
        "task": task,
        "config": to_dict(config),
        "normalizer": data.normalizer.to_dict(),
        "return_stats": {k: v for k, v in data.stats.items() if k.startswith("return")},
        "metrics": metrics,
        "provenance": provenance or {},
    }
    (out / "baseline.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return metrics


@dataclass
class Baseline:
    """A trained baseline, answering in physical units."""

    task: str
    model: MLP
    normalizer: Normalizer
    metadata: dict[str, Any]

    @property
    def inputs(self) -> list[str]:
        """The modality of each input, in order (``states`` twice for inverse dynamics)."""
        return [name for name, _ in _IO[self.task][0]]

    def predict(self, *inputs: np.ndarray) -> np.ndarray:
        """Batched prediction: one (B, k) array per input, raw units in, raw units out."""
        names = self.inputs
        if len(inputs) != len(names):
            raise ValueError(f"{self.task} takes {len(names)} inputs ({names}), got {len(inputs)}")
        parts = [
            self.normalizer.normalize(n, np.asarray(v, np.float32)) for n, v in zip(names, inputs)
        ]
        x = np.concatenate(parts, axis=1)
        with torch.no_grad():
            y = self.model(torch.from_numpy(x.astype(np.float32))).numpy()
        return self.normalizer.denormalize(_IO[self.task][1][0], y)


def load_baseline(directory: str | Path) -> Baseline:
    """Load what ``train_baseline`` wrote into ``directory`` (CPU)."""
    directory = Path(directory)
    meta = yaml.safe_load((directory / "baseline.yaml").read_text())
    weights = load_file(str(directory / "baseline.safetensors"))
    config = meta["config"]
    first, last = weights["net.0.weight"], weights[f"net.{2 * config['layers']}.weight"]
    model = MLP(first.shape[1], last.shape[0], config["hidden"], config["layers"])
    model.load_state_dict(weights)
    model.eval()
    return Baseline(meta["task"], model, Normalizer.from_dict(meta["normalizer"]), meta)
