"""Where one training step goes: ``Trainer.train_step`` of the reference configuration under
``torch.profiler``, its operators summed into the parts of a step (linear layers, attention,
dropout, autocast casts, optimiser, loss, mask handling), plus the host-side batch sampling and
mask drawing timed alone. With ``--compile``: the same step with the transformer blocks under
``torch.compile`` (inductor, dynamic shapes: the encoder's visible-token count varies per
mask) against the default eager step, alternating, with the compile time (inductor's caches
off, as on a first run). Compiled, fp32 linear layers keep torch's BLAS (inductor cannot lower
the oneDNN linear of ``mtm_robot.training.onednn_linear``).

  python bench/train_profile.py [--precision bf16] [--steps 8] [--batch 64] [--threads 1]
  TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 python bench/train_profile.py --compile --precision bf16
"""

from __future__ import annotations

import argparse
import os
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
    "mkldnn::_linear_pointwise": "linear layers (GEMM, forward and backward)",
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


def compile_ab(args: argparse.Namespace) -> str:
    """Eager vs compiled blocks, one step of each in turn; returns the markdown section."""
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        eager = make_trainer(args.batch, args.precision, Path(tmp) / "eager")
        # inductor cannot lower the oneDNN linear of an fp32 step: compiled, it keeps torch's
        compiled = make_trainer(args.batch, args.precision, Path(tmp) / "compiled", "torch")
        for block in [*compiled.model.encoder, *compiled.model.decoder]:
            block.compile(dynamic=True)
        start = time.perf_counter()
        first = []
        for _ in range(25):  # compile, and recompile for each new shape until stable
            step_start = time.perf_counter()
            compiled.train_step(sync=False)
            first.append(time.perf_counter() - step_start)
        warm_s = time.perf_counter() - start
        for _ in range(3):
            eager.train_step(sync=False)
        times: dict[str, list[float]] = {"eager": [], "compiled": []}
        for _ in range(args.steps):
            for name, trainer in (("eager", eager), ("compiled", compiled)):
                step_start = time.perf_counter()
                trainer.train_step(sync=False)
                times[name].append(time.perf_counter() - step_start)
    e, c = (float(np.median(times[k])) * 1000.0 for k in ("eager", "compiled"))
    saved = e - c
    payback = f"{warm_s * 1000.0 / saved:.0f} steps" if saved > 0 else "never (slower)"
    command = (
        "TORCHINDUCTOR_FORCE_DISABLE_CACHES=1 python bench/train_profile.py --compile "
        f"--precision {args.precision} --steps {args.steps} --batch {args.batch} "
        f"--threads {args.threads}"
    )
    caches = os.environ.get("TORCHINDUCTOR_FORCE_DISABLE_CACHES") == "1"
    verdict = (
        "It does not pay here, so the trainer offers no compile option."
        if saved <= 0
        else "It pays here: worth a trainer option on this machine."
    )
    return f"""## torch.compile of the training step ({args.precision})

The transformer blocks of `Trainer.train_step` under `torch.compile(dynamic=True)` (inductor)
against the same step eager, batch {args.batch}, {args.threads} torch thread(s), {args.steps}
timed steps each, one of each in turn (compiled, fp32 linear layers keep torch's BLAS: inductor
cannot lower the oneDNN linear). Compile: first step {first[0]:.1f} s, second
{first[1]:.1f} s, 25 warm-up steps {warm_s:.0f} s in all (inductor caches
{"off" if caches else "on: a second run, not a first"}). Step p50: eager {e:.0f} ms,
compiled {c:.0f} ms ({e / c:.2f}x); the compile pays back after {payback}. Compiled, the
dropout masks come from inductor's own random stream, so runs are not bit-equal to eager
ones. {verdict} Hardware: {hardware()}. Load average before {load_before}, after
{load_average()}.

Command: `{command}`
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="eager vs torch.compile")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.compile:
        md = compile_ab(args)
        print(md)
        if not args.no_write:
            write_section(f"train-compile-{args.precision}", md)
        return
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
