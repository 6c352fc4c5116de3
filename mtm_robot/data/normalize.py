"""Per-modality, per-dimension z-scoring, fitted on training data, stored with checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mtm_robot.errors import CheckpointError


@dataclass
class Normalizer:
    """``x_norm = (x - mean) / std``; dimensions with std below ``min_std`` are only shifted."""

    mean: dict[str, np.ndarray] = field(default_factory=dict)
    std: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def fit(cls, arrays: dict[str, np.ndarray], min_std: float = 1e-2) -> Normalizer:
        """Fit on ``name -> (N, dim)`` arrays of training data."""
        mean, std = {}, {}
        for name, data in arrays.items():
            data = np.asarray(data, dtype=np.float64).reshape(len(data), -1)
            mean[name] = data.mean(axis=0).astype(np.float32)
            s = data.std(axis=0)
            std[name] = np.where(s < min_std, 1.0, s).astype(np.float32)
        return cls(mean, std)

    def normalize(self, name: str, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean[name]) / self.std[name]).astype(np.float32, copy=False)

    def denormalize(self, name: str, x: np.ndarray) -> np.ndarray:
        return (x * self.std[name] + self.mean[name]).astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, dict[str, list[float]]]:
        return {
            name: {"mean": self.mean[name].tolist(), "std": self.std[name].tolist()}
            for name in self.mean
        }

    @classmethod
    def from_dict(cls, data: dict[str, dict[str, list[float]]]) -> Normalizer:
        try:
            mean = {n: np.asarray(v["mean"], dtype=np.float32) for n, v in data.items()}
            std = {n: np.asarray(v["std"], dtype=np.float32) for n, v in data.items()}
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"normalizer statistics are malformed: {exc}") from exc
        for name in mean:
            if mean[name].shape != std[name].shape or not np.all(std[name] > 0):
                raise CheckpointError(f"normalizer '{name}': bad mean/std")
        return cls(mean, std)
