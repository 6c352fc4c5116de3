"""Loop timing: the realtime controller with the inference node on the same machine.

1. 40 Hz for ``--ticks`` ticks (walker-walk, return-conditioned) against the model under test:
   deadline misses, period jitter p50/p99 (deviation from the nominal period), latency p50/p99.
2. A rate sweep for a trivial policy (a width-16 one-layer MTM: transport and loop cost only,
   the same-run baseline) and for the model under test: the highest rate with zero misses.

  python bench/loop_timing.py [--checkpoint default] [--ticks 10000] [--sweep-ticks 1000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from controllers.loop import Controller, ControllerConfig, EpisodeResult
from controllers.timing import set_realtime_priority
from mtm_robot.data.normalize import Normalizer
from mtm_robot.model.mtm import MTM, DataSpec, ModelConfig
from mtm_robot.report.page import hardware, write_section
from mtm_robot.serving.process import NodeProcess
from mtm_robot.training.checkpoint import load_checkpoint, save_checkpoint
from mtm_robot_client import NodeClient
from sim import registry

RATES = (40, 100, 200, 300, 400, 600, 800, 1000)


def trivial_checkpoint(path: Path, like: str) -> Path:
    """A width-16 one-layer MTM with the dims of ``like``: (almost) no inference cost."""
    spec = load_checkpoint(like).spec
    model = MTM(
        DataSpec(dict(spec.modalities), spec.segment_length),
        ModelConfig(width=16, encoder_layers=1, decoder_layers=1, heads=2, dropout=0.0),
    )
    rng = np.random.default_rng(0)
    norm = Normalizer.fit({n: rng.normal(size=(64, k)) for n, k in spec.modalities.items()})
    save_checkpoint(
        path,
        model,
        norm,
        {"model_id": "trivial-width16", "return_stats": {"return_min": 0.0, "return_max": 1.0}},
    )
    return path


def run_ticks(
    endpoint: str, rate_hz: float, ticks: int, seed: int = 50_000_000
) -> list[EpisodeResult]:
    env = registry.make("walker")
    results: list[EpisodeResult] = []
    try:
        with NodeClient(endpoint) as client:
            client.wait_ready()
            config = ControllerConfig(target_return=0.9, control_hz=rate_hz, deadline_margin_ms=0.3)
            controller = Controller(env, client, config)
            done = 0
            while done < ticks:
                config.max_steps = min(1000, ticks - done)
                result = controller.run_episode(seed + len(results))
                results.append(result)
                done += result.ticks
    finally:
        env.close()
    return results


def stats(results: list[EpisodeResult]) -> dict[str, float]:
    tel = [r.telemetry.arrays() for r in results]
    period = np.concatenate([t["period_s"][1:] for t in tel])
    nominal = results[0].nominal_period_s
    jitter = np.abs(period - nominal) * 1e3
    latency = np.concatenate([t["latency_s"] for t in tel]) * 1e3
    latency = latency[np.isfinite(latency)]
    misses = sum(int(np.sum(t["level"] != "model")) for t in tel)
    return {
        "ticks": sum(r.ticks for r in results),
        "misses": misses,
        "skipped": sum(int(t["skipped"].sum()) for t in tel),
        "jitter_p50": float(np.percentile(jitter, 50)),
        "jitter_p99": float(np.percentile(jitter, 99)),
        "latency_p50": float(np.percentile(latency, 50)) if len(latency) else float("nan"),
        "latency_p99": float(np.percentile(latency, 99)) if len(latency) else float("nan"),
    }


def sweep(endpoint: str, ticks: int) -> tuple[int, list[tuple[int, dict[str, float]]]]:
    best, rows = 0, []
    for rate in RATES:
        s = stats(run_ticks(endpoint, rate, ticks))
        rows.append((rate, s))
        print(f"  {rate} Hz: {s['misses']} misses, jitter p99 {s['jitter_p99']:.3f} ms", flush=True)
        if s["misses"] == 0:
            best = rate
        else:
            break
    return best, rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", default="default")
    parser.add_argument("--ticks", type=int, default=10_000)
    parser.add_argument("--sweep-ticks", type=int, default=1000)
    parser.add_argument(
        "--rt-priority",
        type=int,
        default=0,
        help="SCHED_FIFO priority for loop and node (0: normal scheduling)",
    )
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.rt_priority and not set_realtime_priority(args.rt_priority):
        print("realtime priority not permitted: measuring at normal priority")
        args.rt_priority = 0
    tmp = Path(tempfile.mkdtemp())
    trivial = trivial_checkpoint(tmp / "trivial", args.checkpoint)
    sections = []
    best = {}
    with NodeProcess(args.checkpoint, tmp / "node.log", rt_priority=args.rt_priority) as node:
        meta = node.start()
        print(f"40 Hz x {args.ticks} ticks with {meta['model_id']}", flush=True)
        main_stats = stats(run_ticks(node.endpoint, 40.0, args.ticks))
        print(main_stats, flush=True)
        print("rate sweep, model under test", flush=True)
        best["model"], model_rows = sweep(node.endpoint, args.sweep_ticks)
        model_id = meta["model_id"]
    with NodeProcess(str(trivial), tmp / "node-trivial.log", rt_priority=args.rt_priority) as node:
        node.start()
        print("rate sweep, trivial policy", flush=True)
        best["trivial"], trivial_rows = sweep(node.endpoint, args.sweep_ticks)
    s = main_stats
    rates = ", ".join(map(str, RATES))
    scheduling = (
        f"SCHED_FIFO priority {args.rt_priority} for loop and node"
        if args.rt_priority
        else "normal scheduling"
    )
    sections.append(f"""## Loop timing (issue: controller)

Realtime controller on walker-walk, return-conditioned, node as a separate process on the same
machine (`launch/serve.py` defaults), {scheduling}.
Hardware: {hardware()}.

**40 Hz, {s["ticks"]} ticks, model `{model_id}`**: {s["misses"]} deadline misses,
{s["skipped"]} skipped ticks; period jitter (|period - 25 ms|) p50 {s["jitter_p50"]:.3f} ms,
p99 {s["jitter_p99"]:.3f} ms; request latency p50 {s["latency_p50"]:.2f} ms,
p99 {s["latency_p99"]:.2f} ms.

Highest rate with zero misses over {args.sweep_ticks} ticks (rates tried: {rates} Hz;
the sweep stops at the first rate with a miss):

| policy | highest rate, zero misses | latency p50 / p99 at that rate (ms) | jitter p99 (ms) |
| --- | --- | --- | --- |""")
    for name, rows, label in (
        ("trivial", trivial_rows, "trivial (width-16 MTM, baseline)"),
        ("model", model_rows, f"`{model_id}`"),
    ):
        ok = [r for r in rows if r[0] == best[name]]
        if ok:
            st = ok[0][1]
            sections.append(
                f"| {label} | {best[name]} Hz | {st['latency_p50']:.2f} / "
                f"{st['latency_p99']:.2f} | {st['jitter_p99']:.3f} |"
            )
        else:
            sections.append(f"| {label} | below {RATES[0]} Hz | - | - |")
    sections.append(
        f"\nCommand: `python bench/loop_timing.py --checkpoint {args.checkpoint} "
        f"--ticks {args.ticks} --sweep-ticks {args.sweep_ticks} --rt-priority {args.rt_priority}`"
    )
    md = "\n".join(sections)
    print(md)
    if not args.no_write:
        write_section("loop-timing", md)


if __name__ == "__main__":
    main()
