"""What a node may reload: where from (remote requests), and which checkpoints count as the
same model (every reload).

* **Where from.** Remote ``reload`` requests are off unless the operator names a directory
  (``--allow-reload DIR``); then only checkpoints under that directory load, judged after
  resolving symlinks and ``..``. Reloads the operator starts on the node's machine (SIGHUP,
  :meth:`~mtm_robot.serving.server.InferenceNode.request_reload`) are not confined.
* **Same model.** A checkpoint with the served model's dimensions can still be another model:
  another task, other normaliser statistics (the units of every input and output), another
  architecture or return definition. Such a swap is refused unless forced. A finetune of the
  served model (``launch/finetune.py`` keeps the normaliser, config and task) is the same model.

Reads only checkpoint metadata (YAML): no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Model-config keys that only matter for training (a finetune may change them).
TRAINING_ONLY_MODEL_KEYS = frozenset({"dropout"})
#: Training data settings that define what the ``returns`` modality means.
RETURN_DEFINITION_KEYS = ("returns", "discount", "return_horizon")


def allowed_reload_path(requested: str, allowed_dir: str) -> Path | None:
    """``requested`` resolved (symlinks, ``..``) if it lies under ``allowed_dir``, else None."""
    if not requested or not allowed_dir:
        return None
    root = Path(allowed_dir).resolve()
    path = Path(requested).resolve()
    return path if path == root or path.is_relative_to(root) else None


def _normalizer_differences(served: dict[str, Any], candidate: dict[str, Any]) -> list[str]:
    if set(served) != set(candidate):
        return [f"normaliser modalities {sorted(served)} vs {sorted(candidate)}"]
    differing = []
    for name in served:
        for stat in ("mean", "std"):
            a = np.asarray(served[name].get(stat, []), dtype=np.float64)
            b = np.asarray(candidate[name].get(stat, []), dtype=np.float64)
            if a.shape != b.shape or not np.allclose(a, b, rtol=1e-6, atol=1e-12):
                differing.append(f"{name}.{stat}")
    return [f"normaliser statistics differ ({', '.join(differing)})"] if differing else []


def spec_differences(served: dict[str, Any], candidate: dict[str, Any]) -> list[str]:
    """Modalities or segment length that differ: such a model cannot answer the same requests."""
    spec_a, spec_b = served.get("data_spec", {}), candidate.get("data_spec", {})
    return [
        f"{key} {spec_a.get(key)} -> {spec_b.get(key)}"
        for key in ("modalities", "segment_length")
        if spec_a.get(key) != spec_b.get(key)
    ]


def model_differences(served: dict[str, Any], candidate: dict[str, Any]) -> list[str]:
    """Why ``candidate`` (checkpoint metadata) is not the served model; [] when it is."""
    found = spec_differences(served, candidate)
    task_a, task_b = served.get("task") or "", candidate.get("task") or ""
    if task_a != task_b:
        found.append(f"task '{task_a}' -> '{task_b}'")
    found += _normalizer_differences(served.get("normalizer", {}), candidate.get("normalizer", {}))
    config_a, config_b = served.get("model_config", {}), candidate.get("model_config", {})
    for key in sorted((set(config_a) | set(config_b)) - TRAINING_ONLY_MODEL_KEYS):
        if config_a.get(key) != config_b.get(key):
            found.append(f"model {key} {config_a.get(key)} -> {config_b.get(key)}")
    data_a = (served.get("training") or {}).get("data") or {}
    data_b = (candidate.get("training") or {}).get("data") or {}
    for key in RETURN_DEFINITION_KEYS:
        if key in data_a and key in data_b and data_a[key] != data_b[key]:
            found.append(f"return definition {key} {data_a[key]} -> {data_b[key]}")
    return found
