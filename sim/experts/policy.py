"""A trained SAC actor in plain numpy, for data collection without torch.

An actor file is a safetensors file holding the actor's ``net.<i>.weight``/``net.<i>.bias``
tensors (torch ``nn.Linear`` layout, ``(out, in)``) and, as string metadata, the task, the
action bounds, the log-std range and training provenance (step, evaluation return).
``ExpertPolicy`` reproduces ``sim.experts.sac.Actor`` exactly: ReLU MLP, tanh-squashed Gaussian
with a tanh-bounded log-std, rescaled to the action bounds.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

ACTOR_FORMAT = "mtm-robot-sac-actor/1"


class ExpertPolicy:
    """``act(obs, rng)`` -> an action inside the task's bounds (numpy only)."""

    def __init__(
        self,
        weights: list[tuple[np.ndarray, np.ndarray]],
        action_low: np.ndarray,
        action_high: np.ndarray,
        log_std_min: float,
        log_std_max: float,
        meta: dict[str, Any],
    ) -> None:
        # float32 like the torch actor it mirrors (and twice as fast as float64 at batch 1)
        self.weights = [(w.astype(np.float32).T.copy(), b.astype(np.float32)) for w, b in weights]
        self.action_low = np.asarray(action_low, dtype=np.float64)
        self.action_high = np.asarray(action_high, dtype=np.float64)
        self.log_std_min, self.log_std_max = float(log_std_min), float(log_std_max)
        self.meta = meta
        self.observation_dim = self.weights[0][0].shape[0]
        self.action_dim = self.action_low.shape[0]
        if self.weights[-1][0].shape[1] != 2 * self.action_dim:
            raise ValueError(
                f"actor outputs {self.weights[-1][0].shape[1]} values, "
                f"expected 2 x action_dim = {2 * self.action_dim}"
            )

    @classmethod
    def load(cls, path: str | Path) -> ExpertPolicy:
        """Load an actor file written by ``save_actor``."""
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            meta_raw = handle.metadata() or {}
        if meta_raw.get("format") != ACTOR_FORMAT:
            raise ValueError(
                f"{path}: not an actor file (format {meta_raw.get('format')!r}, "
                f"expected {ACTOR_FORMAT!r})"
            )
        tensors = load_file(str(path))
        n_layers = int(meta_raw["n_layers"])
        weights = [
            (tensors[f"net.{2 * i}.weight"], tensors[f"net.{2 * i}.bias"]) for i in range(n_layers)
        ]
        meta = json.loads(meta_raw["meta"])
        return cls(
            weights,
            np.asarray(json.loads(meta_raw["action_low"])),
            np.asarray(json.loads(meta_raw["action_high"])),
            float(meta_raw["log_std_min"]),
            float(meta_raw["log_std_max"]),
            meta,
        )

    def distribution(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(obs, dtype=np.float32)
        for i, (w, b) in enumerate(self.weights):
            x = x @ w + b
            if i < len(self.weights) - 1:
                x = np.maximum(x, 0.0)
        mean, raw_log_std = x[..., : self.action_dim], x[..., self.action_dim :]
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (
            np.tanh(raw_log_std) + 1.0
        )
        return mean, log_std

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The mean action if ``rng`` is None, else a sample of the squashed Gaussian."""
        mean, log_std = (v.astype(np.float64) for v in self.distribution(obs))
        pre_tanh = mean if rng is None else mean + np.exp(log_std) * rng.standard_normal(mean.shape)
        scale = (self.action_high - self.action_low) / 2.0
        action = np.tanh(pre_tanh) * scale + (self.action_high + self.action_low) / 2.0
        return np.clip(action, self.action_low, self.action_high)  # float rounding only


def save_actor(
    path: str | Path,
    tensors: dict[str, np.ndarray],
    action_low: np.ndarray,
    action_high: np.ndarray,
    log_std_min: float,
    log_std_max: float,
    meta: dict[str, Any],
) -> None:
    """Write the actor's ``net.*`` tensors plus metadata as a safetensors actor file."""
    net = {
        k: np.ascontiguousarray(v, dtype=np.float32)
        for k, v in tensors.items()
        if k.startswith("net.")
    }
    n_layers = sum(1 for k in net if k.endswith(".weight"))
    metadata = {
        "format": ACTOR_FORMAT,
        "n_layers": str(n_layers),
        "action_low": json.dumps([float(v) for v in action_low]),
        "action_high": json.dumps([float(v) for v in action_high]),
        "log_std_min": repr(float(log_std_min)),
        "log_std_max": repr(float(log_std_max)),
        "meta": json.dumps(meta, sort_keys=True),
    }
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    save_file(net, str(tmp), metadata=metadata)
    tmp.replace(path)


def shipped_expert(task: str, level: str = "expert") -> Path:
    """Path of an actor shipped inside the package (``sim/experts/<task>/<level>.safetensors``)."""
    from sim.registry import resolve

    name = resolve(task)
    path = Path(str(resources.files("sim.experts"))) / name / f"{level}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"no shipped {level!r} policy for {name} (looked for {path})")
    return path
