"""Checkpoints: safetensors weights plus readable YAML metadata. Loading never unpickles.

A checkpoint is a directory::

    checkpoint.yaml        format version, model config, data spec, normaliser statistics,
                           return statistics, training config and provenance, weights sha256
    model.safetensors      the weights
    trainer.safetensors    optional: optimiser moments, for exact resume of training

A checkpoint alone is enough to serve: no dataset is needed. A training run's checkpoints
(``checkpoints/step_N`` and ``checkpoints/latest``) are each written whole beside their place and
renamed in (:mod:`mtm_robot.atomic`); :func:`newest_resumable` picks the one a run resumes from.
Reading and verifying the metadata alone needs no torch: :mod:`mtm_robot.checkpoint_meta`
(its names are re-exported here).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mtm_robot import atomic
from mtm_robot.checkpoint_meta import (
    DEFAULT_CHECKPOINT,
    FORMAT_VERSION,
    METADATA_FILE,
    TRAINER_FILE,
    WEIGHTS_FILE,
    WEIGHTS_HEADER,
    read_metadata,
    resolve_checkpoint_path,
    verify_checkpoint,
)
from mtm_robot.checkpoint_meta import check_sha256 as _check_sha256
from mtm_robot.checkpoint_meta import sha256_file as _sha256
from mtm_robot.config import from_dict, to_dict
from mtm_robot.data.normalize import Normalizer
from mtm_robot.errors import CheckpointError, ConfigError, SpecMismatchError
from mtm_robot.model.mtm import MTM, DataSpec, ModelConfig

log = logging.getLogger(__name__)
__all__ = [
    "DEFAULT_CHECKPOINT",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "TRAINER_FILE",
    "WEIGHTS_FILE",
    "Checkpoint",
    "check_resumable",
    "check_spec_matches",
    "load_checkpoint",
    "load_trainer_state",
    "newest_resumable",
    "read_metadata",
    "resolve_checkpoint_path",
    "save_checkpoint",
    "verify_checkpoint",
]


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode), its normaliser and its metadata."""

    model: MTM
    normalizer: Normalizer
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def spec(self) -> DataSpec:
        return self.model.spec

    @property
    def model_id(self) -> str:
        return str(self.metadata.get("model_id", "unnamed"))

    @property
    def weights_sha256(self) -> str:
        return str(self.metadata.get("weights_sha256", ""))


def save_checkpoint(
    directory: str | Path,
    model: MTM,
    normalizer: Normalizer,
    metadata: dict[str, Any],
    trainer_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint directory (each file atomically; metadata last)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = directory / f".{WEIGHTS_FILE}.tmp"
    # the weights file records the spec and sizes it was trained with (checked at load time:
    # an edited checkpoint.yaml can no longer describe weights it does not fit)
    header = {
        key: json.dumps(to_dict(getattr(model, attr))) for key, attr in WEIGHTS_HEADER.items()
    }
    save_file(weights, str(tmp), metadata=header)
    os.replace(tmp, directory / WEIGHTS_FILE)
    if trainer_state is not None:
        tmp = directory / f".{TRAINER_FILE}.tmp"
        save_file({k: v.detach().cpu().contiguous() for k, v in trainer_state.items()}, str(tmp))
        os.replace(tmp, directory / TRAINER_FILE)
    meta = dict(metadata)
    meta.update(
        format_version=FORMAT_VERSION,
        data_spec=to_dict(model.spec),
        model_config=to_dict(model.config),
        normalizer=normalizer.to_dict(),
        weights_sha256=_sha256(directory / WEIGHTS_FILE),
    )
    if trainer_state is not None:
        meta["trainer_sha256"] = _sha256(directory / TRAINER_FILE)
    meta.setdefault("model_id", directory.name)
    text = yaml.safe_dump(meta, sort_keys=False, width=120)
    atomic.write_text(directory / METADATA_FILE, text)
    return directory


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint directory for inference (``model.eval()``)."""
    directory = resolve_checkpoint_path(path)
    meta = verify_checkpoint(directory)
    weights_path = directory / WEIGHTS_FILE
    try:
        spec = from_dict(DataSpec, meta["data_spec"], "data_spec")
        config = from_dict(ModelConfig, meta["model_config"], "model_config")
        normalizer = Normalizer.from_dict(meta["normalizer"])
    except (KeyError, ConfigError) as exc:
        raise CheckpointError(f"{directory}: bad metadata ({exc})") from exc
    try:
        state = load_file(str(weights_path), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights_path}: unreadable safetensors file ({exc})") from exc
    model = MTM(spec, config)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights_path}: weights do not fit the config ({exc})") from exc
    model.to(device).eval()
    return Checkpoint(model, normalizer, meta, directory)


def check_resumable(directory: str | Path) -> dict[str, Any]:
    """The metadata of a training checkpoint whose weights and trainer state are complete
    (sha256 as recorded); :class:`CheckpointError` saying what is wrong otherwise."""
    directory = Path(directory)
    meta = read_metadata(directory)
    _check_sha256(directory / WEIGHTS_FILE, meta.get("weights_sha256"))
    if "trainer_sha256" in meta:  # checkpoints written before it was recorded: presence only
        _check_sha256(directory / TRAINER_FILE, meta["trainer_sha256"])
    elif not (directory / TRAINER_FILE).is_file():
        raise CheckpointError(f"{directory}: no trainer state, cannot resume")
    if not isinstance(meta.get("step"), int) or "resume" not in meta:
        raise CheckpointError(f"{directory}: no training step in the metadata, cannot resume")
    return meta


def newest_resumable(checkpoints: str | Path) -> Path | None:
    """The checkpoint a run in ``checkpoints/`` resumes from: the newest intact one of
    ``latest`` and ``step_N`` (a kill or a bad disk can leave any one of them missing or
    truncated). None for a fresh run (no checkpoint there); :class:`CheckpointError` when
    there are checkpoints and none is intact: a run never restarts silently from step 0."""
    checkpoints = Path(checkpoints)
    candidates = [checkpoints / "latest", *checkpoints.glob("step_*")]
    candidates = [p for p in candidates if p.is_dir()]
    if not candidates:
        return None
    intact: list[tuple[int, bool, Path]] = []
    problems: list[str] = []
    for path in candidates:
        try:
            meta = check_resumable(path)
        except CheckpointError as exc:
            problems.append(str(exc))
            continue
        intact.append((int(meta["step"]), path.name == "latest", path))
    for problem in problems:
        log.warning("not resuming from it: %s", problem)
    if not intact:
        raise CheckpointError(
            f"{checkpoints}: no intact checkpoint to resume from ({'; '.join(problems)}); "
            f"to start again from step 0, move that folder away or pass another --out"
        )
    return max(intact)[2]  # the highest step; `latest` on a tie


def load_trainer_state(directory: str | Path) -> dict[str, torch.Tensor] | None:
    path = Path(directory) / TRAINER_FILE
    if not path.is_file():
        return None
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable safetensors file ({exc})") from exc


def check_spec_matches(spec: DataSpec, dims: dict[str, int], where: str) -> None:
    """Fail fast when a model's modality dims differ from a task's or dataset's."""
    for name, dim in dims.items():
        if name in spec.modalities and spec.modalities[name] != dim:
            raise SpecMismatchError(
                f"{where}: '{name}' has dim {dim} but the checkpoint expects "
                f"{spec.modalities[name]}"
            )
