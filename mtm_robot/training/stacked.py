"""Stacked training: K MTMs of one architecture trained in one process as one computation.

A study trains many small MTMs (seeds, datasets, arms). Run as K processes they time-slice
the cores (or the GPU) and each pays its own per-step framework overhead on small matrices;
stacked, the K models are one set of parameters with a leading K dimension
(``torch.func.stack_module_state``), one forward+loss is ``vmap``-ed over K
(``torch.func.functional_call`` on a weightless copy of the module), and one AdamW steps every
model at once. Every Linear becomes a batched matmul over K, so the hardware sees K times
larger kernels and the framework's per-op cost is paid once per step instead of K times.

**Exactly the separate runs.** Member ``i`` draws what a :class:`~mtm_robot.training.train.
Trainer` with its seed draws, in the same order: its initial weights (``torch.manual_seed``
before building the model), its batch group and mask (``mask_rng``), its windows
(``data_rng``), from its own dataset and normaliser. AdamW is elementwise, so one optimiser
over the stacked tensors is K independent AdamWs: the same weight-decay split as the trainer
(decay on Linear weights only, by parameter name), the same ``lr_multiplier`` schedule, and
the same step count for every member (bias correction agrees). The loss of the step is the
*sum* of the members' losses, whose gradient with respect to member i's slice is member i's
own gradient. With dropout 0 the loss curves equal separate training's to float rounding
(``tests/training/test_stacked.py``); with dropout the members draw their dropout masks from
one torch stream (``vmap(randomness="different")``), so they are statistically, not
bitwise, the separate runs.

**Why the per-sample mask path.** Each member has its own mask per step. The model's shared
mask path (a mask of shape (L,)) keeps only the visible tokens, a data-dependent shape that
``vmap`` cannot batch over members with different masks. The model's per-sample path (masks
of shape (B, L): every token enters the encoder, attention only reaches visible keys through an
additive key bias) has fixed shapes, so each member's (L,) mask is broadcast to (B, L) and the
vmapped forward takes that path. Its visible-token outputs equal the shared path's (the
masked keys' attention weights are exactly 0 and masked encoder outputs are replaced by mask
tokens before the decoder), so the losses and gradients agree; the price is that the encoder
computes every token, about 2.4x the encoder work of the shared path at the reference's keep
ratios (about 1.6x the whole step's). Attention runs through torch's vmap fallback for CPU
SDPA (a loop over the K members; an explicit matmul attention measured no faster).

**Where it pays.** Stacking removes per-model overhead and fills a device that one small model
leaves idle (a GPU). A CPU is another matter: one walker MTM step at batch 256 already keeps
the cores busy on matrix products, so K separate processes lose little to time-slicing and
the stacked step's extra encoder work is not repaid; there the vmap runs in chunks of
:data:`CPU_CHUNK` members (activations stay in cache). ``bench/stacked_training.py`` measures
both against K separate processes; its section of ``docs/benchmarks.md`` has the figures.

Checkpoints: each member's run directory gets ordinary checkpoints (``checkpoints/step_N`` and
``latest``), with the trainer's metadata and optimiser-state layout, so each loads, serves and
resumes like one written by :class:`Trainer`. A stacked run restarted on the same directories
resumes every member from its newest intact checkpoint (they must agree on the step).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, stack_module_state, vmap

from mtm_robot import atomic
from mtm_robot.config import save_config
from mtm_robot.data.episodes import Episode
from mtm_robot.data.segments import SegmentDataset, build_dataset
from mtm_robot.errors import CheckpointError, ConfigError
from mtm_robot.hardware import torch_device
from mtm_robot.model import masks as mask_lib
from mtm_robot.model.mtm import MTM, DataSpec, reconstruction_loss
from mtm_robot.training import checkpoint as ckpt
from mtm_robot.training.metrics import evaluate
from mtm_robot.training.train import (
    TrainConfig,
    checkpoint_metadata,
    drop_metrics_after,
    episode_action_bounds,
    episode_task,
    lr_multiplier,
    native_bf16,
)

log = logging.getLogger(__name__)
#: members per vmapped chunk on a CPU (see StackedTrainer)
CPU_CHUNK = 4
#: torch's warning that SDPA has no vmap batching rule on CPU (it loops over the K members)
_SDPA_FALLBACK = "There is a performance drop because we have not yet implemented the batching"


@dataclass
class Member:
    """One of the K runs: its seed, its training episodes and its run directory."""

    seed: int
    episodes: Sequence[Episode]
    out_dir: str | Path
    provenance: dict[str, Any] | None = None


@dataclass
class _State:
    """What a member owns besides its slice of the stacked parameters."""

    config: TrainConfig  # the shared config with this member's seed
    data: SegmentDataset
    out: Path
    mask_rng: np.random.Generator
    data_rng: np.random.Generator
    provenance: dict[str, Any]
    task: str  # what the member's checkpoints record: as the Trainer derives them
    action_bounds: dict[str, list[float]] | None


class StackedTrainer:
    """Trains the K ``members`` with one config (``config.seed`` is replaced by each member's)."""

    def __init__(
        self, config: TrainConfig, members: Sequence[Member], chunk_size: int | None = None
    ) -> None:
        """``chunk_size``: members per vmapped chunk. Default: all K at once on a GPU, and
        :data:`CPU_CHUNK` on a CPU, where smaller chunks keep the activations in cache
        (measured: K = 8 in chunks of 4 runs 1.5x faster than all 8 at once)."""
        if not members:
            raise ConfigError("stacked training needs at least one member")
        outs = [Path(m.out_dir).resolve() for m in members]
        if len(set(outs)) != len(outs):
            raise ConfigError("every stacked member needs its own out_dir")
        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = torch_device(config.device)
        self.bf16 = config.precision == "bf16" or (
            config.precision == "auto" and native_bf16(self.device)
        )
        self.members: list[_State] = []
        models: list[MTM] = []
        spec: DataSpec | None = None
        for member, out in zip(members, outs):
            mconfig = dataclasses.replace(config, seed=member.seed)
            data = build_dataset(member.episodes, config.data)
            mspec = DataSpec(
                {n: data.dims[n] for n in config.data.modalities}, config.data.segment_length
            )
            if spec is not None and mspec != spec:
                raise ConfigError(
                    f"stacked members need one data spec: member seed {member.seed} has "
                    f"{mspec}, the first has {spec}; train different tasks in separate runs"
                )
            spec = mspec
            torch.manual_seed(member.seed)  # as Trainer: the seed, then the model
            models.append(MTM(mspec, config.model).to(self.device))
            self.members.append(
                _State(
                    mconfig,
                    data,
                    out,
                    np.random.default_rng(member.seed),
                    np.random.default_rng([member.seed, 0]),
                    dict(member.provenance or {}),
                    config.task or episode_task(member.episodes),
                    episode_action_bounds(member.episodes, mspec.modalities.get("actions")),
                )
            )
        assert spec is not None
        self.spec = spec
        self.names = list(spec.modalities)
        params, buffers = stack_module_state(models)  # name -> (K, ...) leaf tensors
        self.params: dict[str, Tensor] = params
        self.buffers: dict[str, Tensor] = buffers
        self._base = copy.deepcopy(models[0]).to("meta")  # the graph, without weights
        decay_params = models[0].parameter_groups(0.0)[0]["params"]  # the trainer's split
        assert isinstance(decay_params, list)
        decay_ids = {id(p) for p in decay_params}
        decay = [n for n, p in models[0].named_parameters() if id(p) in decay_ids]
        o = config.optim
        self.optimizer = torch.optim.AdamW(
            [
                {"params": [params[n] for n in decay], "weight_decay": o.weight_decay},
                {"params": [p for n, p in params.items() if n not in decay], "weight_decay": 0.0},
            ],
            lr=o.lr,
            betas=(o.betas[0], o.betas[1]),
            fused=True,  # as Trainer
        )
        if chunk_size is not None and chunk_size < 1:
            raise ConfigError(f"chunk_size must be >= 1 or None, got {chunk_size}")
        if chunk_size is None:
            chunk_size = CPU_CHUNK if self.device.type == "cpu" else len(members)
        self.chunk_size = min(chunk_size, len(members))
        self._loss = vmap(self._member_loss, randomness="different", chunk_size=self.chunk_size)
        self.step = 0
        for state in self.members:
            state.out.mkdir(parents=True, exist_ok=True)
            save_config(state.config, state.out / "config.yaml")
        self._resume_if_saved()

    @property
    def k(self) -> int:
        return len(self.members)

    # -- one step ---------------------------------------------------------------------------
    def _member_loss(
        self,
        params: dict[str, Tensor],
        buffers: dict[str, Tensor],
        x: dict[str, Tensor],
        masks: dict[str, Tensor],
        weights: dict[str, Tensor],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """One member's loss (run under vmap: x (B, L, k), masks (B, L), weights (B,))."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = functional_call(self._base, (params, buffers), (x, masks))
        return reconstruction_loss(out, x, weights)

    def _member_batch(
        self, state: _State
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """A member's batch, mask (B, L) and loss weights (B,), drawn as Trainer draws them."""
        B, L = self.config.batch_size, self.spec.segment_length
        group = state.data.choose_group(state.mask_rng)
        batch = state.data.groups[group].sample(state.data_rng, B)
        mask = mask_lib.sample_batch_mask(group, self.names, L, self.config.masks, state.mask_rng)
        x, m, w = {}, {}, {}
        for n, dim in self.spec.modalities.items():
            value = batch.get(n)
            x[n] = value if value is not None else np.zeros((B, L, dim), dtype=np.float32)
            m[n] = np.broadcast_to(mask[n], (B, L))
            w[n] = np.full(B, 1.0 if n in batch else 0.0, dtype=np.float32)
        return x, m, w

    def train_step(self, sync: bool = True) -> list[dict[str, float]]:
        """One optimiser step of every member; per-member records (empty with ``sync=False``)."""
        drawn = [self._member_batch(state) for state in self.members]
        stacked = []
        for part in range(3):
            stacked.append(
                {
                    n: torch.from_numpy(np.stack([d[part][n] for d in drawn])).to(self.device)
                    for n in self.names
                }
            )
        x, m, w = stacked  # (K, B, L, k), (K, B, L), (K, B)
        o = self.config.optim
        scale = lr_multiplier(self.step, o.warmup_steps, self.config.steps, o.min_lr_fraction)
        for group in self.optimizer.param_groups:
            group["lr"] = o.lr * scale
        with warnings.catch_warnings():  # see the module docstring: attention loops over K
            warnings.filterwarnings("ignore", message=_SDPA_FALLBACK, category=UserWarning)
            losses, parts = self._loss(self.params, self.buffers, x, m, w)  # (K,), name -> (K,)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # member i's slice gets member i's own gradient
        self.optimizer.step()
        self.step += 1
        if not sync:
            return []
        lr = self.optimizer.param_groups[0]["lr"]
        loss_values = losses.detach().float().cpu().tolist()
        part_values = {n: v.detach().float().cpu().tolist() for n, v in parts.items()}
        records = []
        for i in range(self.k):
            record = {"loss": loss_values[i], "lr": lr}
            record.update({f"loss/{n}": part_values[n][i] for n in self.names})
            record["labelled"] = float(w["actions"][i, 0] > 0) if "actions" in w else 1.0
            records.append(record)
        return records

    # -- members as ordinary models ---------------------------------------------------------
    def member_model(self, i: int) -> MTM:
        """A standalone copy of member ``i`` (eval mode, on the trainer's device)."""
        with torch.random.fork_rng(devices=[]):  # building it must not move the dropout stream
            model = MTM(self.spec, self.config.model).to(self.device)
        model.load_state_dict({n: p[i].detach() for n, p in self.params.items()})
        return model.eval()

    def validate(self) -> list[dict[str, float]]:
        return [
            evaluate(
                self.member_model(i),
                state.data.normalizer,
                state.data.validation,
                state.data.stats,
                seed=state.config.seed,
            )
            for i, state in enumerate(self.members)
        ]

    # -- checkpoints ------------------------------------------------------------------------
    def _metadata(self, i: int) -> dict[str, Any]:
        state = self.members[i]
        return checkpoint_metadata(
            model_id=f"{self.config.model_id}-seed{state.config.seed}@step{self.step}",
            task=state.task,
            action_bounds=state.action_bounds,
            step=self.step,
            data=state.data,
            config=state.config,
            provenance={
                **state.provenance,
                "world_size": 1,
                "stacked": {"members": self.k, "index": i},
            },
            device=self.device,
            bf16=self.bf16,
            rngs=(state.mask_rng, state.data_rng),
        )

    def _trainer_state(self, i: int) -> dict[str, Tensor]:
        """Member i's optimiser state in the Trainer's layout (``optim/<param>/<key>``)."""
        out: dict[str, Tensor] = {"torch_rng": torch.get_rng_state()}
        for name, param in self.params.items():
            for key, value in self.optimizer.state.get(param, {}).items():
                tensor = value if torch.is_tensor(value) else torch.tensor(value)
                out[f"optim/{name}/{key}"] = tensor if tensor.dim() == 0 else tensor[i]
        return out

    def save(self) -> list[Path]:
        """Write every member's ``step_N`` and ``latest``, each whole or not at all."""
        written = []
        for i, state in enumerate(self.members):
            checkpoints = state.out / "checkpoints"
            latest = checkpoints / "latest"
            atomic.recover_dir(latest)
            directory = checkpoints / f"step_{self.step}"
            with atomic.staged_dir(directory) as staging:
                ckpt.save_checkpoint(
                    staging,
                    self.member_model(i),
                    state.data.normalizer,
                    self._metadata(i),
                    self._trainer_state(i),
                )
            with atomic.staged_dir(latest) as staging:
                for path in directory.iterdir():
                    if not path.name.startswith("."):
                        shutil.copy2(path, staging / path.name)
            steps = sorted(checkpoints.glob("step_*"), key=lambda p: int(p.name.split("_")[1]))
            for old in steps[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            written.append(directory)
        return written

    def _resume_if_saved(self) -> None:
        found = [ckpt.newest_resumable(s.out / "checkpoints") for s in self.members]
        if all(f is None for f in found):
            return
        if any(f is None for f in found):
            missing = [str(s.out) for s, f in zip(self.members, found) if f is None]
            raise CheckpointError(
                f"some stacked members have checkpoints and {missing} do not: resume the same "
                "members with the same directories, or start in new directories"
            )
        steps = [int(ckpt.read_metadata(f)["step"]) for f in found if f is not None]
        if len(set(steps)) != 1:
            raise CheckpointError(
                f"stacked members' newest checkpoints are at different steps {steps}: "
                "resume them separately with launch/train.py"
            )
        params = {n: p.detach().clone() for n, p in self.params.items()}
        optim: dict[str, dict[str, list[Tensor]]] = {}
        for i, (state, directory) in enumerate(zip(self.members, found)):
            assert directory is not None
            loaded = ckpt.load_checkpoint(directory, self.device)
            if loaded.spec != self.spec:
                raise CheckpointError(f"{directory}: data spec {loaded.spec} != {self.spec}")
            for n, value in loaded.model.state_dict().items():
                if n in params:
                    params[n][i] = value
            trainer_state = ckpt.load_trainer_state(directory)
            if trainer_state is None:
                raise CheckpointError(f"{directory}: no trainer state, cannot resume")
            for key, value in trainer_state.items():
                if key.startswith("optim/"):
                    _, pname, skey = key.split("/", 2)
                    optim.setdefault(pname, {}).setdefault(skey, []).append(value)
            meta = loaded.metadata
            state.mask_rng.bit_generator.state = meta["resume"]["mask_rng"]
            state.data_rng.bit_generator.state = meta["resume"]["data_rng"]
            torch.set_rng_state(trainer_state["torch_rng"])
        with torch.no_grad():
            for n, p in self.params.items():
                p.copy_(params[n])
        for pname, entries in optim.items():
            param = self.params[pname]
            self.optimizer.state[param] = {
                key: (values[0] if values[0].dim() == 0 else torch.stack(values)).to(self.device)
                for key, values in entries.items()
            }
        self.step = steps[0]
        for state in self.members:
            drop_metrics_after(state.out / "metrics.jsonl", self.step)
        log.info("stacked run resumed %d members at step %d", self.k, self.step)

    # -- the loop ---------------------------------------------------------------------------
    def run(self, progress: bool = True) -> list[dict[str, float]]:
        """Train every member to ``config.steps``; returns each member's last validation."""
        c = self.config
        last: list[dict[str, float]] = [{} for _ in self.members]
        start, first_step = time.perf_counter(), self.step
        while self.step < c.steps:
            records = self.train_step(sync=(self.step + 1) % 50 == 0 or self.step + 1 == c.steps)
            if records:
                elapsed = time.perf_counter() - start
                rate = (self.step - first_step) * c.batch_size / elapsed
                for state, record in zip(self.members, records):
                    _log(state.out, self.step, {**record, "segments_per_s": rate})
                if progress:
                    losses = ", ".join(f"{r['loss']:.4f}" for r in records)
                    log.info("stacked step %d/%d: losses %s", self.step, c.steps, losses)
            if self.step % c.eval_every == 0 or self.step == c.steps:
                last = self.validate()
                for state, metrics in zip(self.members, last):
                    _log(state.out, self.step, metrics)
            if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                self.save()
        return last


def _log(out: Path, step: int, record: dict[str, float]) -> None:
    with open(out / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"step": step, **record}) + "\n")
