"""The MTM trainer: AdamW, warm-up then cosine, masked reconstruction, exact resume, DDP.

Run it through ``python launch/train.py`` (or ``torchrun ... launch/train.py`` for several
processes). A run directory holds ``config.yaml`` (the resolved config), ``metrics.jsonl``,
TensorBoard event files (when tensorboard is installed) and ``checkpoints/step_N`` plus
``checkpoints/latest`` (a copy of the newest), each a full checkpoint that can be served.

A run started again in the same directory resumes from the newest intact checkpoint (a kill
costs at most the steps since the last one) and drops the ``metrics.jsonl`` rows logged after
it. Each checkpoint is written whole beside its place and renamed in, so a kill at any moment
leaves ``latest`` or the newest ``step_N`` intact, and no ``step_N`` is ever overwritten by a
run that restarted from scratch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from mtm_robot import atomic
from mtm_robot.config import at_least, one_of, positive, save_config, to_dict
from mtm_robot.data.episodes import Episode
from mtm_robot.data.segments import DataConfig, SegmentDataset, build_dataset
from mtm_robot.errors import CheckpointError, ConfigError, TrainingError
from mtm_robot.hardware import torch_device
from mtm_robot.model import masks as mask_lib
from mtm_robot.model.mtm import MTM, DataSpec, ModelConfig, reconstruction_loss
from mtm_robot.training import checkpoint as ckpt
from mtm_robot.training import onednn_linear
from mtm_robot.training.metrics import evaluate

log = logging.getLogger(__name__)


@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.005
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_steps: int = 1000
    min_lr_fraction: float = 0.0  # cosine decays to lr * min_lr_fraction

    def __post_init__(self) -> None:
        positive(lr=self.lr)
        at_least(0, weight_decay=self.weight_decay, warmup_steps=self.warmup_steps)
        if not 0.0 <= self.min_lr_fraction <= 1.0:
            raise ValueError(f"min_lr_fraction must be in [0, 1], got {self.min_lr_fraction}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")


@dataclass
class TrainConfig:
    """Everything a training run needs; written into the run directory and checkpoints."""

    model: ModelConfig = field(default_factory=ModelConfig)
    masks: mask_lib.MaskConfig = field(default_factory=mask_lib.MaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    steps: int = 20_000
    batch_size: int = 256
    seed: int = 0
    eval_every: int = 1000
    checkpoint_every: int = 2000
    checkpoint_every_s: float = 0.0  # also checkpoint once this long passed since the last (0: off)
    keep_checkpoints: int = 3  # newest step_N directories kept (latest always kept)
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads per process; 0 = torch's default
    precision: str = "auto"  # auto (bf16 where the hardware has it) | bf16 | fp32
    # fp32 linear layers on a CPU: onednn (oneDNN's GEMM, about twice torch's BLAS on AMD
    # CPUs; mtm_robot.training.onednn_linear) | torch (torch's own BLAS, e.g. MKL). Trainer
    # only: StackedTrainer's vmapped members keep torch's
    fp32_linear: str = "onednn"
    model_id: str = "mtm"
    task: str = ""

    def __post_init__(self) -> None:
        at_least(1, steps=self.steps, batch_size=self.batch_size, eval_every=self.eval_every)
        at_least(1, checkpoint_every=self.checkpoint_every, keep_checkpoints=self.keep_checkpoints)
        at_least(0, seed=self.seed, threads=self.threads)
        one_of("device", self.device, ("auto", "cpu", "cuda"))
        one_of("precision", self.precision, ("auto", "bf16", "fp32"))
        one_of("fp32_linear", self.fp32_linear, ("onednn", "torch"))


def checkpoint_metadata(
    *,
    model_id: str,
    task: str,
    action_bounds: dict[str, list[float]] | None,
    step: int,
    data: SegmentDataset,
    config: TrainConfig,
    provenance: dict[str, Any],
    device: torch.device,
    bf16: bool,
    rngs: tuple[np.random.Generator, np.random.Generator],
) -> dict[str, Any]:
    """What a checkpoint records beside its weights (one home: the Trainer and the stacked
    trainer's members write the same layout)."""
    stats = data.stats
    return {
        "model_id": model_id,
        "task": task,
        "action_bounds": action_bounds,
        "step": step,
        "return_stats": {k: v for k, v in stats.items() if k.startswith("return")},
        "error_normalizers": {k: v for k, v in stats.items() if not k.startswith("return")},
        "data_report": to_dict(data.report),
        "training": to_dict(config),
        "provenance": {
            **provenance,
            "device": str(device),
            "bf16_autocast": bf16,
            "torch": str(torch.__version__),
            "host": platform.node(),
            "saved_unix_s": time.time(),
        },
        "resume": {
            "mask_rng": rngs[0].bit_generator.state,
            "data_rng": rngs[1].bit_generator.state,
        },
    }


def drop_metrics_after(path: Path, step: int) -> None:
    """Rows of ``metrics.jsonl`` logged after the checkpoint a run resumes from are logged
    again: drop them (and a line a kill cut short)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines(keepends=True):
        try:
            row_step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):  # a line a kill cut short
            continue
        if isinstance(row_step, int) and row_step <= step:
            kept.append(line if line.endswith("\n") else line + "\n")
    atomic.write_text(path, "".join(kept))


def episode_task(episodes: Sequence[Episode]) -> str:
    """The one task the episodes' metadata names, or "" when they name none or several."""
    tasks = {str(e.meta["task"]) for e in episodes if e.meta.get("task")}
    return tasks.pop() if len(tasks) == 1 else ""


def episode_action_bounds(
    episodes: Sequence[Episode], action_dim: int | None
) -> dict[str, list[float]] | None:
    """``{low, high}`` from the episodes' ``action_low``/``action_high`` metadata when every
    episode that records them agrees (what the recorder and collect write), else None."""
    seen = {
        (tuple(map(float, e.meta["action_low"])), tuple(map(float, e.meta["action_high"])))
        for e in episodes
        if "action_low" in e.meta and "action_high" in e.meta
    }
    if len(seen) != 1:
        if len(seen) > 1:
            log.warning("episodes record %d different action bounds: none kept", len(seen))
        return None
    low, high = seen.pop()
    if action_dim is not None and not (len(low) == len(high) == action_dim):
        log.warning("action bounds of %d values for %d actions: ignored", len(low), action_dim)
        return None
    return {"low": list(low), "high": list(high)}


def lr_multiplier(step: int, warmup: int, total: int, floor: float = 0.0) -> float:
    """Linear warm-up to 1, then cosine to ``floor`` at ``total`` (reference 5.1)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (CUDA, or a CPU with AVX512-BF16 or AMX)."""
    if device.type == "cuda":
        return True
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


class Trainer:
    """Owns the model, optimiser, data and run directory of one training run."""

    def __init__(
        self,
        config: TrainConfig,
        episodes: Sequence[Episode],
        out_dir: str | Path,
        provenance: dict[str, Any] | None = None,
        init_from: str | Path | None = None,
    ) -> None:
        """``init_from``: a checkpoint whose weights and normaliser start the run (finetuning)."""
        self.config = config
        self.out = Path(out_dir)
        self.rank, self.world = _distributed()
        if self.world > 1 and not dist.is_initialized():
            backend = "nccl" if config.device == "cuda" else "gloo"
            dist.init_process_group(backend)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = torch_device(config.device)
        if self.device.type == "cuda" and self.world > 1:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            self.device = torch.device("cuda", torch.cuda.current_device())
        initial = ckpt.load_checkpoint(init_from) if init_from is not None else None
        self.data: SegmentDataset = build_dataset(
            episodes, config.data, initial.normalizer if initial is not None else None
        )
        self.spec = DataSpec(
            {n: self.data.dims[n] for n in config.data.modalities}, config.data.segment_length
        )
        torch.manual_seed(config.seed)
        self.model = MTM(self.spec, config.model).to(self.device)
        if initial is not None:
            if initial.spec != self.spec or initial.model.config != config.model:
                raise CheckpointError(
                    f"{init_from}: model {initial.spec} / {initial.model.config} does not match "
                    f"the run's {self.spec} / {config.model}"
                )
            self.model.load_state_dict(initial.model.state_dict())
        if config.precision not in ("auto", "bf16", "fp32"):
            raise ConfigError(f"precision must be auto, bf16 or fp32, got '{config.precision}'")
        self.bf16 = config.precision == "bf16" or (
            config.precision == "auto" and native_bf16(self.device)
        )
        self.ddp = DistributedDataParallel(self.model) if self.world > 1 else None
        # the training forward's fp32 linear layers on oneDNN (same precision, ~2x on AMD)
        self.linear_mode: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if (
            not self.bf16
            and self.device.type == "cpu"
            and config.fp32_linear == "onednn"
            and onednn_linear.available()
        ):
            self.linear_mode = onednn_linear.OneDNNLinearMode()
        # fused AdamW: one kernel for every parameter, on CUDA and, since torch 2.4, on CPU
        # (hence the torch>=2.4 pin in pyproject.toml: 2.2 and 2.3 refuse fused on CPU)
        self.optimizer = torch.optim.AdamW(
            self.model.parameter_groups(config.optim.weight_decay),
            lr=config.optim.lr,
            betas=(config.optim.betas[0], config.optim.betas[1]),
            fused=True,
        )
        # one mask stream shared by every rank (same mask, same graph); data differs per rank
        self.mask_rng = np.random.default_rng(config.seed)
        self.data_rng = np.random.default_rng([config.seed, self.rank])
        self.step = 0
        self.provenance = dict(provenance or {})
        source = initial.metadata if initial is not None else {}
        self.task = config.task or episode_task(episodes) or str(source.get("task") or "")
        self.action_bounds = episode_action_bounds(episodes, self.spec.modalities.get("actions"))
        if self.action_bounds is None:
            self.action_bounds = source.get("action_bounds")
        self._tb: Any = None
        if self.rank == 0:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(config, self.out / "config.yaml")
        self.resumed_from: Path | None = None
        resume = ckpt.newest_resumable(self.out / "checkpoints")
        if resume is not None:
            self._resume(resume)

    # -- one step ---------------------------------------------------------------------------
    def _set_lr(self) -> None:
        o = self.config.optim
        scale = lr_multiplier(self.step, o.warmup_steps, self.config.steps, o.min_lr_fraction)
        for group in self.optimizer.param_groups:
            group["lr"] = o.lr * scale

    def _draw_mask(self, group: str, names: list[str]) -> mask_lib.Mask:
        L = self.spec.segment_length
        return mask_lib.sample_batch_mask(group, names, L, self.config.masks, self.mask_rng)

    def train_step(self, sync: bool = True) -> dict[str, float]:
        """One optimiser step; with ``sync=False`` it returns nothing and never waits for the
        device (reading the loss would stall a GPU's queue every step)."""
        self.model.train()
        # group and mask come from the stream every rank shares; the windows are per rank
        group = self.data.choose_group(self.mask_rng)
        batch = self.data.groups[group].sample(self.data_rng, self.config.batch_size)
        names = list(self.spec.modalities)
        mask = self._draw_mask(group, names)
        B, L = self.config.batch_size, self.spec.segment_length
        x = {}
        for n in names:
            value = batch.get(n)
            x[n] = (
                torch.from_numpy(value)
                if value is not None
                else torch.zeros(B, L, self.spec.modalities[n])
            ).to(self.device, non_blocking=True)
        m = {n: torch.from_numpy(v).to(self.device) for n, v in mask.items()}
        self._set_lr()
        with (
            torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16),
            self.linear_mode,
        ):
            out = (self.ddp or self.model)(x, m)
        weights = None
        if group != "labelled":  # loss only over the modalities this data has
            weights = {n: torch.zeros(B, device=self.device) for n in names if n not in batch}
        loss, parts = reconstruction_loss(out, x, weights)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        if not sync:
            return {}
        result = {"loss": float(loss.detach()), "lr": self.optimizer.param_groups[0]["lr"]}
        result.update({f"loss/{n}": float(v.detach()) for n, v in parts.items()})
        result["labelled"] = float(group == "labelled")
        return result

    # -- checkpoints ------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return checkpoint_metadata(
            model_id=f"{self.config.model_id}@step{self.step}",
            task=self.task,
            action_bounds=self.action_bounds,
            step=self.step,
            data=self.data,
            config=self.config,
            provenance={**self.provenance, "world_size": self.world},
            device=self.device,
            bf16=self.bf16,
            rngs=(self.mask_rng, self.data_rng),
        )

    def _trainer_state(self) -> dict[str, torch.Tensor]:
        state: dict[str, torch.Tensor] = {"torch_rng": torch.get_rng_state()}
        index = {id(p): name for name, p in self.model.named_parameters()}
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                for key, value in self.optimizer.state.get(p, {}).items():
                    tensor = value if torch.is_tensor(value) else torch.tensor(value)
                    state[f"optim/{index[id(p)]}/{key}"] = tensor.reshape(tensor.shape)
        return state

    def save(self) -> Path:
        """Write ``step_N`` and replace ``latest`` with a copy of it, each whole or not at all."""
        checkpoints = self.out / "checkpoints"
        latest = checkpoints / "latest"
        atomic.recover_dir(latest)  # what a kill during the last save left beside it
        for stray in checkpoints.glob(".step_*"):
            shutil.rmtree(stray, ignore_errors=True)
        directory = checkpoints / f"step_{self.step}"
        with atomic.staged_dir(directory) as staging:
            ckpt.save_checkpoint(
                staging, self.model, self.data.normalizer, self.metadata(), self._trainer_state()
            )
        with atomic.staged_dir(latest) as staging:
            for path in directory.iterdir():
                if not path.name.startswith("."):
                    shutil.copy2(path, staging / path.name)
        steps = sorted(
            (p for p in (self.out / "checkpoints").glob("step_*")),
            key=lambda p: int(p.name.split("_")[1]),
        )
        for old in steps[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return directory

    def _resume(self, directory: Path) -> None:
        loaded = ckpt.load_checkpoint(directory, self.device)
        state = ckpt.load_trainer_state(directory)
        if state is None:
            raise CheckpointError(f"{directory}: no trainer state, cannot resume")
        if loaded.spec != self.spec:
            raise CheckpointError(f"{directory}: data spec {loaded.spec} differs from {self.spec}")
        self.model.load_state_dict(loaded.model.state_dict())
        self.model.train()
        torch.set_rng_state(state["torch_rng"])
        params = dict(self.model.named_parameters())
        for key, value in state.items():
            if not key.startswith("optim/"):
                continue
            _, pname, skey = key.split("/", 2)
            param = params[pname]
            # fused AdamW keeps every state tensor, ``step`` included, on the parameter's device
            self.optimizer.state.setdefault(param, {})[skey] = value.to(self.device)
        meta = loaded.metadata
        self.step = int(meta["step"])
        self.mask_rng.bit_generator.state = meta["resume"]["mask_rng"]
        if self.rank == 0:
            self.data_rng.bit_generator.state = meta["resume"]["data_rng"]
        else:  # only rank 0's stream is stored; other ranks restart theirs at this step
            self.data_rng = np.random.default_rng([self.config.seed, self.rank, self.step])
        self.resumed_from = directory
        if self.rank == 0:
            drop_metrics_after(self.out / "metrics.jsonl", self.step)
        log.info("resumed from %s at step %d", directory, self.step)

    # -- the loop ---------------------------------------------------------------------------
    def _log(self, record: dict[str, float]) -> None:
        with open(self.out / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps({"step": self.step, **record}) + "\n")
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                self._tb = False
            else:
                self._tb = SummaryWriter(str(self.out / "tensorboard"))
        if self._tb:
            for key, value in record.items():
                self._tb.add_scalar(key, value, self.step)

    def validate(self) -> dict[str, float]:
        return evaluate(
            self.model,
            self.data.normalizer,
            self.data.validation,
            self.data.stats,
            seed=self.config.seed,
        )

    def run(self, progress: bool = True) -> dict[str, float]:
        """Train to ``config.steps``; returns the last validation metrics."""
        c = self.config
        last: dict[str, float] = {}
        bar = tqdm(
            total=c.steps,
            initial=self.step,
            disable=not progress or self.rank != 0,
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )
        start = time.perf_counter()
        first_step = self.step
        last_save_s = time.monotonic()
        while self.step < c.steps:
            record = self.train_step(sync=(self.step + 1) % 50 == 0 or self.step + 1 == c.steps)
            bar.update(1)
            if record and not math.isfinite(record["loss"]):
                self._stop_non_finite(f"the loss is {record['loss']}")
            if self.rank != 0:
                continue
            if self.step % 50 == 0 or self.step == c.steps:
                elapsed = time.perf_counter() - start
                record["segments_per_s"] = (
                    (self.step - first_step) * c.batch_size * self.world / elapsed
                )
                self._log(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}")
            if self.step % c.eval_every == 0 or self.step == c.steps:
                last = self.validate()
                self._log(last)
                bar.write(
                    f"step {self.step}: "
                    + ", ".join(f"{k}={v:.4f}" for k, v in last.items() if "/" not in k)
                )
            due_s = 0 < c.checkpoint_every_s <= time.monotonic() - last_save_s
            if self.step % c.checkpoint_every == 0 or self.step == c.steps or due_s:
                self._require_finite_weights()  # never a checkpoint of a diverged model
                self.save()
                last_save_s = time.monotonic()
        bar.close()
        if self._tb:
            self._tb.close()
        return last

    def _require_finite_weights(self) -> None:
        for name, param in self.model.named_parameters():
            if not bool(torch.isfinite(param).all()):
                self._stop_non_finite(f"weight '{name}' is non-finite")

    def _stop_non_finite(self, what: str) -> None:
        saved = sorted(
            (p for p in (self.out / "checkpoints").glob("step_*") if p.is_dir()),
            key=lambda p: int(p.name.split("_")[1]),
        )
        last = f"the last checkpoint is {saved[-1]}" if saved else "no checkpoint was written"
        raise TrainingError(
            f"training diverged at step {self.step}: {what}; nothing of it is saved ({last}). "
            f"Lower optim.lr (now {self.config.optim.lr:g}) or raise optim.warmup_steps, and "
            "check the data for extreme values"
        )

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
