"""A checkpoint's metadata, read and verified without torch.

The checkpoint format itself (what each file holds, how it is written) is described in
:mod:`mtm_robot.training.checkpoint`, which builds the model from it. Everything that only
needs the metadata (a control or calibration process checking an I/O map against a model, the
node checking a reload, finetune checking its source) reads it here: YAML, ``hashlib`` and the
safetensors header, no deep-learning stack.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from safetensors import SafetensorError, safe_open

from mtm_robot.errors import CheckpointError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
METADATA_FILE = "checkpoint.yaml"
WEIGHTS_FILE = "model.safetensors"
TRAINER_FILE = "trainer.safetensors"
#: The weights file's header: key -> the model attribute it records (as JSON).
WEIGHTS_HEADER = {"data_spec": "spec", "model_config": "config"}
#: The models that ship inside the package, one folder per task (``checkpoints/<task>/``).
SHIPPED_CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
#: The walker-walk model: ``default`` when no task is named.
DEFAULT_CHECKPOINT = SHIPPED_CHECKPOINTS / "walker-walk"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_metadata(directory: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint directory as written (format version checked)."""
    directory = Path(directory)
    path = directory / METADATA_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory}: not a checkpoint (no {METADATA_FILE})")
    try:
        meta = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable YAML ({exc})") from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a mapping")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version!r}, expected {FORMAT_VERSION}")
    return meta


def action_bounds(
    metadata: Mapping[str, Any], action_dim: int
) -> tuple[list[float], list[float]] | None:
    """``(low, high)`` from a checkpoint's (or a node's ``metadata`` reply's) ``action_bounds``,
    or None when it records none; malformed bounds (not ``action_dim`` finite numbers each,
    low <= high) are logged and ignored."""
    bounds = metadata.get("action_bounds")
    if bounds is None:
        return None
    low = bounds.get("low") if isinstance(bounds, Mapping) else None
    high = bounds.get("high") if isinstance(bounds, Mapping) else None
    try:
        lo = [float(x) for x in low]  # type: ignore[union-attr]
        hi = [float(x) for x in high]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        lo = hi = []
    well_formed = len(lo) == len(hi) == action_dim and all(
        math.isfinite(a) and math.isfinite(b) and a <= b for a, b in zip(lo, hi)
    )
    if not well_formed:
        log.warning("action_bounds malformed (expected %d finite low <= high): ignored", action_dim)
        return None
    return lo, hi


def shipped_tasks() -> list[str]:
    """The (canonical) tasks a model ships for, sorted."""
    return sorted(p.parent.name for p in SHIPPED_CHECKPOINTS.glob(f"*/{METADATA_FILE}"))


def resolve_checkpoint_path(path: str | Path, task: str | None = None) -> Path:
    """``default`` -> the model shipped for ``task`` (a canonical task name, e.g.
    ``cartpole-swingup``), or the walker-walk model when no task is given; any other value is
    the checkpoint directory itself. A task without a shipped model is a
    :class:`CheckpointError` naming the tasks that have one."""
    if str(path) != "default":
        return Path(path)
    if task is None:
        return DEFAULT_CHECKPOINT
    if task not in shipped_tasks():
        raise CheckpointError(
            f"no model ships for task '{task}' (shipped: {', '.join(shipped_tasks())}); pass "
            f"--checkpoint DIR with one trained on it (docs/default-model.md: collect, then "
            f"mtm-train --data DIR --out RUN, then --checkpoint RUN/checkpoints/latest)"
        )
    return SHIPPED_CHECKPOINTS / task


def verify_checkpoint(path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint whose weights are complete (sha256 as recorded) and are
    the ones its metadata describes (data spec and model sizes as the weights file records
    them), without building the model; :class:`CheckpointError` saying what is wrong."""
    directory = resolve_checkpoint_path(path)
    meta = read_metadata(directory)
    check_sha256(directory / WEIGHTS_FILE, meta.get("weights_sha256"))
    _check_weights_header(directory / WEIGHTS_FILE, meta)
    return meta


def check_sha256(path: Path, expected: object) -> None:
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: missing {path.name}")
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(
            f"{path}: sha256 {actual[:12]} does not match the metadata "
            f"({str(expected)[:12]}): truncated or tampered file"
        )


def _check_weights_header(path: Path, meta: dict[str, Any]) -> None:
    try:  # the header only: numpy framework, no tensor is read
        with safe_open(str(path), framework="numpy") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from exc
    for key in WEIGHTS_HEADER:
        if key not in header:  # written before the weights carried it
            continue
        trained = json.loads(header[key])
        described = meta.get(key)
        if not isinstance(described, dict):
            raise CheckpointError(f"{path.parent}: {METADATA_FILE} has no {key}")
        differ = [
            f"{name} {described.get(name)!r} in {METADATA_FILE} but {value!r} in the weights"
            for name, value in trained.items()
            if described.get(name) != value
            or (isinstance(value, dict) and list(described.get(name, {})) != list(value))
        ]
        if differ:
            raise CheckpointError(
                f"{path.parent}: the weights do not fit {METADATA_FILE} ({key}: "
                f"{'; '.join(differ)}); restore the checkpoint's own {METADATA_FILE} or "
                "retrain with the settings you want"
            )
