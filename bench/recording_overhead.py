"""Recording overhead per control tick: ``EpisodeRecorder.record`` against a no-op call, in the
same paced loop (walker-sized step: 24-d state, 6-d action, physics state, telemetry).

  python bench/recording_overhead.py [--rate 40] [--ticks 1200]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from controllers.recorder import EpisodeRecorder
from controllers.timing import LoopTimer
from mtm_robot.report.page import hardware, percentiles_ms, write_section


def paced(rate: float, ticks: int, call: Callable[..., object]) -> list[float]:
    timer = LoopTimer(rate)
    rng = np.random.default_rng(0)
    state, action, physics = rng.normal(size=24), rng.normal(size=6), rng.normal(size=40)
    samples = []
    for t in range(ticks):
        timer.wait()
        start = time.perf_counter()
        call(
            state,
            action,
            1.0,
            physics,
            t / rate,
            latency_s=0.002,
            level="model",
            model_id="mtm-walker-walk@step20000",
            requested=action,
            surprise=0.1,
        )
        samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=40.0)
    parser.add_argument("--ticks", type=int, default=1200)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--switch-interval-us",
        type=float,
        default=5000.0,
        help="sys.setswitchinterval in us (5000 is the Python default)",
    )
    args = parser.parse_args()
    sys.setswitchinterval(args.switch_interval_us * 1e-6)

    def noop(*a: object, **k: object) -> bool:
        return True

    baseline = paced(args.rate, args.ticks, noop)
    with tempfile.TemporaryDirectory() as tmp:
        recorder = EpisodeRecorder(tmp)
        recorder.begin({"task": "walker-walk"})
        recorded = paced(args.rate, args.ticks, recorder.record)
        recorder.end()
        recorder.close()
        dropped, flushes = recorder.dropped_steps, recorder.flushes
        write_p50, write_p99 = percentiles_ms(recorder.write_s)
    rows = []
    for name, samples in (
        ("no-op call (baseline)", baseline),
        ("EpisodeRecorder.record", recorded),
    ):
        p50, p99 = percentiles_ms(samples)
        rows.append(f"| {name} | {p50 * 1e3:.1f} | {p99 * 1e3:.1f} | {max(samples) * 1e6:.1f} |")
    command = (
        f"python bench/recording_overhead.py --rate {args.rate:g} --ticks {args.ticks} "
        f"--switch-interval-us {args.switch_interval_us:g}"
    )
    md = f"""## Recording overhead per tick (issue: data loop)

{args.ticks} ticks paced at {args.rate:g} Hz, walker-sized steps; the writer thread flushed
{flushes} chunks (chunk write p50 {write_p50:.2f} ms, p99 {write_p99:.2f} ms, off the tick),
{dropped} steps dropped; GIL switch interval {args.switch_interval_us:g} us.
Hardware: {hardware()}.

| call on the tick | p50 (us) | p99 (us) | max (us) |
| --- | --- | --- | --- |
{chr(10).join(rows)}

Command: `{command}`
"""
    print(md)
    if not args.no_write:
        write_section("recording-overhead", md)


if __name__ == "__main__":
    main()
