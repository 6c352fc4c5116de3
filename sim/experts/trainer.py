"""The SAC training loop: environment interaction, evaluation, checkpoints and resume.

Run directory layout (``out``):

```
config.json            the resolved TrainConfig (with the SAC config) of the run
metrics.jsonl          one JSON object per log/eval event ("kind": "train" | "eval")
learning_curve.png     evaluation return against environment steps
checkpoint/            latest resumable state, replaced atomically:
    agent.safetensors  actor, critics, target critics, log_alpha
    state.npz          replay buffer, Adam moments, torch RNG (plain arrays, no pickle)
    progress.json      step, episodes, wall time, numpy RNG state, best eval
snapshots/step_XXXXXXX.safetensors   actor files (sim.experts.policy) at every evaluation
```

Seeds: training episode ``k`` resets with seed ``seed * 100_000 + k``; in-training evaluation
uses seeds ``10_000_000 + i``; choosing the shipped expert among the best snapshots uses
``15_000_000 + i``; the final test of a shipped policy uses ``20_000_000 + i``
(``TEST_SEED_BASE``), never touched during training or selection.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file as load_tensors
from safetensors.torch import save_file as save_tensors

from sim.evaluation import StatePolicy, evaluate
from sim.experts.policy import save_actor
from sim.experts.sac import ReplayBuffer, SACAgent, SACConfig
from sim.registry import make, normalized_score, resolve, task_spec

logger = logging.getLogger(__name__)

TRAIN_SEED_STRIDE = 100_000
EVAL_SEED_BASE = 10_000_000
VALIDATION_SEED_BASE = 15_000_000
TEST_SEED_BASE = 20_000_000


@dataclass
class TrainConfig:
    """One expert training run."""

    task: str = "walker-walk"
    """registered task name (aliases such as ``walker`` allowed)."""
    steps: int = 500_000
    """environment steps in total (one gradient update per step after the seed steps)."""
    seed: int = 0
    """seed of networks, replay sampling and training episodes."""
    seed_steps: int = 5_000
    """initial steps with uniform-random actions and no updates."""
    replay_capacity: int = 1_000_000
    """replay buffer size (transitions)."""
    eval_every: int = 10_000
    """environment steps between evaluations (each also writes an actor snapshot)."""
    eval_episodes: int = 5
    """episodes per evaluation (deterministic mean actions)."""
    checkpoint_every: int = 25_000
    """environment steps between resumable checkpoints."""
    log_every: int = 1_000
    """environment steps between training-metric lines in metrics.jsonl."""
    threads: int = 1
    """torch intra-op threads (one is fastest for these small networks)."""
    sac: SACConfig = field(default_factory=SACConfig)
    """SAC hyper-parameters."""

    def __post_init__(self) -> None:
        self.task = resolve(self.task)
        if isinstance(self.sac, dict):
            self.sac = SACConfig(**self.sac)
        for name in ("steps", "eval_every", "eval_episodes", "checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.seed_steps < 0:
            raise ValueError(f"seed_steps must be >= 0, got {self.seed_steps}")


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


class Trainer:
    """Owns the agent, the environments and the run directory of one training run."""

    def __init__(self, config: TrainConfig, out: str | Path, progress: bool = True) -> None:
        self.config = config
        self.out = Path(out)
        self.progress = progress
        torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.env = make(config.task)
        env = self.env
        self.agent = SACAgent(
            env.observation_dim, env.action_dim, env.action_low, env.action_high, config.sac
        )
        capacity = min(config.replay_capacity, config.steps)
        self.replay = ReplayBuffer(env.observation_dim, env.action_dim, capacity)
        self.rng = np.random.default_rng(config.seed)
        self.step = 0
        self.episodes = 0
        self.wall_s = 0.0
        self.evals: list[dict[str, Any]] = []
        self._stop = False
        self.start_step = 0

    # -- run directory ------------------------------------------------------------------
    def _config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    def resume_if_possible(self) -> bool:
        """Load ``out/checkpoint`` if present (refusing a different config); True if loaded."""
        ckpt = self.out / "checkpoint"
        if not ckpt.exists() and (self.out / "checkpoint.old").exists():
            ckpt = self.out / "checkpoint.old"  # crashed between the two renames
        if not (ckpt / "progress.json").exists():
            return False
        saved = json.loads((self.out / "config.json").read_text())
        mine = self._config_dict()
        # the total step count may be raised to continue a run; everything else must match
        diff = {k for k in mine if k != "steps" and saved.get(k) != mine[k]}
        if diff:
            raise ValueError(
                f"{self.out} holds a run with a different config ({', '.join(sorted(diff))}); "
                "use another --out or the same settings"
            )
        self.agent.load_state_tensors(load_tensors(str(ckpt / "agent.safetensors")))
        with np.load(ckpt / "state.npz", allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        self.replay.load_arrays(arrays)
        self.agent.load_optimizer_arrays(arrays)
        torch.set_rng_state(torch.from_numpy(arrays["torch_rng"]))
        progress = json.loads((ckpt / "progress.json").read_text())
        self.step, self.episodes = progress["step"], progress["episodes"]
        self.wall_s = progress["wall_s"]
        self.evals = progress["evals"]
        self.rng.bit_generator.state = progress["numpy_rng"]
        logger.info("resumed %s at step %d", self.out, self.step)
        return True

    def save_checkpoint(self) -> None:
        tmp = self.out / "checkpoint.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save_tensors(self.agent.state_tensors(), str(tmp / "agent.safetensors"))
        arrays = {**self.replay.arrays(), **self.agent.optimizer_arrays()}
        arrays["torch_rng"] = torch.get_rng_state().numpy()
        with open(tmp / "state.npz", "wb") as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]
            handle.flush()
            os.fsync(handle.fileno())
        progress = {
            "step": self.step,
            "episodes": self.episodes,
            "wall_s": self.wall_s,
            "evals": self.evals,
            "numpy_rng": self.rng.bit_generator.state,
        }
        _atomic_write_text(tmp / "progress.json", json.dumps(progress))
        final, old = self.out / "checkpoint", self.out / "checkpoint.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)

    def _log(self, record: dict[str, Any]) -> None:
        with open(self.out / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def _snapshot(self, eval_record: dict[str, Any]) -> Path:
        path = self.out / "snapshots" / f"step_{self.step:07d}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {
            k[len("actor.") :]: v.numpy()
            for k, v in self.agent.state_tensors().items()
            if k.startswith("actor.net.")
        }
        meta = {"task": self.config.task, "seed": self.config.seed, **eval_record}
        save_actor(
            path,
            tensors,
            self.env.action_low,
            self.env.action_high,
            self.config.sac.log_std_min,
            self.config.sac.log_std_max,
            meta,
        )
        return path

    def _plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = [e["step"] for e in self.evals]
        means = np.array([e["return_mean"] for e in self.evals])
        stds = np.array([e["return_std"] for e in self.evals])
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(steps, means, marker="o", markersize=3)
        ax.fill_between(steps, means - stds, means + stds, alpha=0.25)
        ax.set_xlabel("environment steps")
        ax.set_ylabel(f"eval return ({self.config.eval_episodes} episodes)")
        ax.set_title(f"SAC on {self.config.task}, seed {self.config.seed}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(self.out / "learning_curve.png", dpi=100)
        plt.close(fig)

    # -- the loop -----------------------------------------------------------------------
    def run_eval(self) -> dict[str, Any]:
        seeds = [EVAL_SEED_BASE + i for i in range(self.config.eval_episodes)]
        actor = StatePolicy(lambda o: self.agent.act(o, deterministic=True))
        returns = evaluate(actor, self.config.task, seeds).returns
        record: dict[str, Any] = {
            "kind": "eval",
            "step": self.step,
            "wall_s": round(self.wall_s, 1),
            "return_mean": float(returns.mean()),
            "return_std": float(returns.std()),
            "returns": [round(float(r), 3) for r in returns],
        }
        if task_spec(self.config.task).reference is not None:
            record["normalized_score"] = normalized_score(self.config.task, float(returns.mean()))
        self.evals.append({k: record[k] for k in ("step", "return_mean", "return_std")})
        self._log(record)
        record["snapshot"] = str(self._snapshot(record))
        self._plot()
        return record

    def _request_stop(self, signum: int, _frame: object) -> None:
        logger.warning("signal %d: checkpointing and stopping", signum)
        self._stop = True

    def train(self) -> dict[str, Any]:
        """Run (or continue) until ``config.steps``; returns the last evaluation record."""
        from tqdm import tqdm

        config = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        if not self.resume_if_possible():
            _atomic_write_text(self.out / "config.json", json.dumps(self._config_dict(), indent=2))
        self.start_step = self.step
        previous = signal.signal(signal.SIGTERM, self._request_stop)
        env, agent = self.env, self.agent
        obs, _ = env.reset(seed=config.seed * TRAIN_SEED_STRIDE + self.episodes)
        episode_return, last_eval = 0.0, (self.evals[-1] if self.evals else {})
        started = time.perf_counter() - self.wall_s
        metrics: dict[str, float] = {}
        bar = tqdm(
            total=config.steps,
            initial=self.step,
            disable=not self.progress,
            desc=config.task,
            unit="step",
            mininterval=5.0,
            smoothing=0.05,
        )
        try:
            while self.step < config.steps and not self._stop:
                if self.step < config.seed_steps:
                    action = self.rng.uniform(env.action_low, env.action_high)
                else:
                    action = agent.act(obs)
                next_obs, reward, terminated, truncated, _ = env.step(action)
                self.replay.add(obs, action, reward, next_obs, terminated)
                obs, episode_return = next_obs, episode_return + reward
                self.step += 1
                if self.step >= config.seed_steps:
                    metrics = agent.update(self.replay.sample(self.rng, config.sac.batch_size))
                if terminated or truncated:
                    self.episodes += 1
                    self._log(
                        {"kind": "episode", "step": self.step, "episode": self.episodes,
                         "return": round(episode_return, 3)}
                    )  # fmt: skip
                    episode_return = 0.0
                    obs, _ = env.reset(seed=config.seed * TRAIN_SEED_STRIDE + self.episodes)
                self.wall_s = time.perf_counter() - started
                if self.step % config.log_every == 0 and metrics:
                    self._log({"kind": "train", "step": self.step, **metrics})
                if self.step % config.eval_every == 0 or self.step == config.steps:
                    last_eval = self.run_eval()
                    bar.set_postfix(eval=f"{last_eval['return_mean']:.0f}", refresh=False)
                if self.step % config.checkpoint_every == 0 or self.step == config.steps:
                    self.save_checkpoint()
                bar.update(1)
        finally:
            bar.close()
            signal.signal(signal.SIGTERM, previous)
        if self._stop:
            self.save_checkpoint()
        return last_eval

    def close(self) -> None:
        self.env.close()


def seconds_to_hms(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m{seconds % 60:02d}s"
