"""Training throughput: this trainer against a plain eager reference MTM, same run.

Both train the reference configuration (width 512, 2 encoder + 1 decoder layers, 4 heads,
segment length 4, walker dims states 24 / actions 6 / returns 1, dropout 0.1, AdamW, one
random-autoregressive mask per batch). "This trainer" is the real ``Trainer.train_step``
(batch sampling, mask drawing, optimiser step included) with its default precision (bf16
autocast where the hardware computes bf16 natively, as on this CPU). Rounds alternate between
the implementations so that machine load affects both alike.

  python bench/train_throughput.py [--batch 64] [--rounds 4] [--steps-per-round 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.reference_mtm import ReferenceMTM, reference_loss
from mtm_robot.data.episodes import Episode
from mtm_robot.model import masks as mask_lib
from mtm_robot.model.mtm import ModelConfig
from mtm_robot.report.page import hardware, percentiles_ms, write_section
from mtm_robot.training.train import TrainConfig, Trainer

DIMS = {"states": 24, "actions": 6, "returns": 1}
WEIGHTS = {"states": 0.2, "returns": 0.1, "actions": 0.7}


def synthetic_episodes(n: int = 8, length: int = 1000) -> list[Episode]:
    rng = np.random.default_rng(0)
    return [
        Episode(
            rng.normal(size=(length, 24)),
            rng.uniform(-1, 1, (length, 6)),
            rng.uniform(0, 1, length),
        )
        for _ in range(n)
    ]


def make_trainer(batch: int, precision: str, out: Path) -> Trainer:
    config = TrainConfig(
        model=ModelConfig(width=512, encoder_layers=2, decoder_layers=1, heads=4, dropout=0.1),
        steps=10**9,
        batch_size=batch,
        precision=precision,
    )
    config.optim.lr = 1e-4
    return Trainer(config, synthetic_episodes(), out)


class ReferenceStep:
    def __init__(self, batch: int, bf16: bool = False) -> None:
        torch.manual_seed(0)
        self.model = ReferenceMTM(DIMS, 4)
        decay = [
            p for n, p in self.model.named_parameters() if n.endswith("weight") and p.dim() > 1
        ]
        other = [
            p
            for n, p in self.model.named_parameters()
            if not (n.endswith("weight") and p.dim() > 1)
        ]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.005}, {"params": other, "weight_decay": 0.0}],
            lr=1e-4,
        )
        self.rng = np.random.default_rng(0)
        self.batch = batch
        self.bf16 = bf16
        self.data = {k: torch.randn(batch, 4, d) for k, d in DIMS.items()}

    def __call__(self) -> None:
        mask = mask_lib.random_autoregressive(
            list(DIMS), 4, self.rng, mask_lib.DEFAULT_KEEP_RATIOS, WEIGHTS
        )
        m = {k: torch.from_numpy(v) for k, v in mask.items()}
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.model(self.data, m)
        loss = reference_loss(out, self.data)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps-per-round", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        runners: dict[str, Callable[[], object]] = {
            "reference eager, fp32 (baseline)": ReferenceStep(args.batch),
            "this trainer, default (bf16 autocast)": make_trainer(
                args.batch, "auto", Path(tmp) / "a"
            ).train_step,
            "this trainer, fp32": make_trainer(args.batch, "fp32", Path(tmp) / "b").train_step,
            "reference eager, bf16 autocast": ReferenceStep(args.batch, bf16=True),
        }
        times: dict[str, list[float]] = {name: [] for name in runners}
        for step in runners.values():  # warm-up
            for _ in range(2):
                step()
        for r in range(args.rounds):
            for _ in range(args.steps_per_round):  # one step of each in turn: load hits all
                for name, step in runners.items():
                    start = time.perf_counter()
                    step()
                    times[name].append(time.perf_counter() - start)
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    # medians, not means: robust to other jobs' bursts on a shared machine
    base = float(np.median(times["reference eager, fp32 (baseline)"]))
    rows = []
    for name, samples in times.items():
        p50, p99 = percentiles_ms(samples)
        rate = args.batch / float(np.median(samples))
        rows.append(
            f"| {name} | {p50:.0f} | {p99:.0f} | {rate:.0f} | {base / np.median(samples):.2f}x |"
        )
    table = "\n".join(rows)
    n_steps = len(times[next(iter(times))])
    command = (
        f"python bench/train_throughput.py --batch {args.batch} --rounds {args.rounds} "
        f"--steps-per-round {args.steps_per_round} --threads {args.threads}"
    )
    md = f"""## Training throughput (issue: MTM core)

Reference configuration (width 512, 2+1 layers, 4 heads, L=4, dims 24/6/1), batch {args.batch},
{args.threads} torch thread(s), {n_steps} timed steps each (one step of each implementation
in turn, so machine load affects all alike). Hardware: {hardware()}.

| implementation | step p50 (ms) | step p99 (ms) | segments/s (p50) | speed-up (p50) |
| --- | --- | --- | --- | --- |
{table}

Command: `{command}`
"""
    print(md)
    if not args.no_write:
        write_section("train-throughput", md)


if __name__ == "__main__":
    main()
