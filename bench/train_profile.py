"""Where one training step goes: ``Trainer.train_step`` of the reference configuration under
``torch.profiler``, its operators summed into the parts of a step (linear layers, attention,
dropout, autocast casts, optimiser, loss, mask handling), plus the host-side batch sampling and
mask drawing timed alone.

  python bench/train_profile.py [--precision bf16] [--steps 8] [--batch 64] [--threads 1]
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
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.train_throughput import load_average, make_trainer
from mtm_robot.report.page import hardware, write_section

#: operator (self time) -> part of the step; anything else is "other elementwise and glue"
PARTS = {
    "aten::mm": "linear layers (GEMM, forward and backward)",
    "aten::addmm": "linear layers (GEMM, forward and backward)",
    "aten::bmm": "attention (scores, softmax, weighted sum)",
    "aten::baddbmm": "attention (scores, softmax, weighted sum)",
    "aten::_softmax": "attention (scores, softmax, weighted sum)",
    "aten::_safe_softmax": "attention (scores, softmax, weighted sum)",
    "aten::_softmax_backward_data": "attention (scores, softmax, weighted sum)",
    "aten::bernoulli_": "dropout masks (bernoulli draws)",
    "aten::copy_": "dtype casts and copies (autocast weights, grads)",
    "aten::_to_copy": "dtype casts and copies (autocast weights, grads)",
    "aten::_fused_adamw_": "optimiser (fused AdamW)",
    "aten::gelu": "GELU and LayerNorm",
    "aten::gelu_backward": "GELU and LayerNorm",
    "aten::native_layer_norm": "GELU and LayerNorm",
    "aten::native_layer_norm_backward": "GELU and LayerNorm",
    "aten::nonzero": "mask handling in the model (index, scatter, select)",
    "aten::index": "mask handling in the model (index, scatter, select)",
    "aten::index_put_": "mask handling in the model (index, scatter, select)",
    "aten::where": "mask handling in the model (index, scatter, select)",
    "aten::repeat_interleave": "mask handling in the model (index, scatter, select)",
    "aten::pow": "loss (MSE)",
    "aten::pow_backward": "loss (MSE)",
    "aten::mean": "loss (MSE)",
}


def host_ms(fn: Callable[[], object], repeats: int = 200) -> float:
    """p50 milliseconds of ``fn`` alone."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples)) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(args.batch, args.precision, Path(tmp))
        for _ in range(3):  # warm-up
            trainer.train_step(sync=False)
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                trainer.train_step(sync=False)
        wall_ms = (time.perf_counter() - start) * 1000.0 / args.steps
        rng = np.random.default_rng(1)
        data, names = trainer.data, list(trainer.spec.modalities)
        sampling = host_ms(lambda: data.groups["labelled"].sample(rng, args.batch))
        masking = host_ms(lambda: trainer._draw_mask("labelled", names))
    parts: dict[str, float] = {}
    total = 0.0
    for event in prof.key_averages():
        if event.key.startswith(("autograd::", "Optimizer.", "ProfilerStep")):
            continue  # wrappers: their operators are counted themselves
        ms = event.self_cpu_time_total / 1000.0 / args.steps
        total += ms
        part = PARTS.get(event.key, "other elementwise and glue (add, mul, cat, views, ...)")
        parts[part] = parts.get(part, 0.0) + ms
    rows = "\n".join(
        f"| {part} | {ms:.1f} | {100 * ms / total:.0f}% |"
        for part, ms in sorted(parts.items(), key=lambda item: -item[1])
    )
    command = (
        f"python bench/train_profile.py --precision {args.precision} --steps {args.steps} "
        f"--batch {args.batch} --threads {args.threads}"
    )
    md = f"""## Training step profile ({args.precision})

`Trainer.train_step` of the reference configuration (as in "Training throughput"), batch
{args.batch}, {args.threads} torch thread(s), {args.steps} steps under `torch.profiler`:
{wall_ms:.0f} ms per step (profiler on), operators' self time {total:.0f} ms per step. Host side,
timed alone (p50): batch sampling (window gather from the preloaded normalised arrays)
{sampling:.3f} ms, mask drawing {masking:.3f} ms per step. Hardware: {hardware()}. Load average
before {load_before}, after {load_average()}.

| part of the step | ms per step | share |
| --- | --- | --- |
{rows}

Command: `{command}`
"""
    print(md)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    if not args.no_write:
        write_section(f"train-profile-{args.precision}", md)


if __name__ == "__main__":
    main()
