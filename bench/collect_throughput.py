"""Data-collection throughput on one worker: env steps/s and per-step latency (p50/p99).

    python bench/collect_throughput.py --task walker --episodes 5   # writes docs/benchmarks.md

Measured in one run, one process, one thread, on the same task:

* baseline   the raw simulator stepped with uniform-random actions, no adapter, no recording
             (dm_control ``suite.load(...).step``, or the gymnasium env's ``step``);
* random     ``sim.datasets.rollout`` with the random recipe (SimEnv checks + recording);
* expert     ``rollout`` with a numpy SAC actor (256x256) sampling actions: the shipped expert
             if there is one, else an actor of the same shape with random weights (same cost);
* collect    ``collect_episodes`` end to end, including writing the episode files.

Writes a markdown section (``--out``) and prints it.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mtm_robot.report.page import write_section
from sim.datasets import CollectJob, collect_episodes, rollout
from sim.env import SimEnv
from sim.experts.policy import ExpertPolicy, save_actor, shipped_expert
from sim.registry import make, resolve


class TimedEnv:
    """Proxy that records the duration of every ``step`` call."""

    def __init__(self, env: SimEnv) -> None:
        self._env = env
        self.step_ns: list[int] = []

    def step(self, action: np.ndarray) -> Any:
        t0 = time.perf_counter_ns()
        out = self._env.step(action)
        self.step_ns.append(time.perf_counter_ns() - t0)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


def percentiles_us(samples_ns: list[int]) -> tuple[float, float]:
    arr = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def bench_baseline(task: str, episodes: int) -> dict[str, Any]:
    spec_env = make(task)
    n_steps = spec_env.max_episode_steps
    backend_env: Any = spec_env._env  # type: ignore[attr-defined]  # the raw simulator
    low, high = spec_env.action_low, spec_env.action_high
    rng = np.random.default_rng(0)
    samples: list[int] = []
    started = time.perf_counter()
    for _ in range(episodes):
        backend_env.reset()
        for _ in range(n_steps):
            action = rng.uniform(low, high)
            t0 = time.perf_counter_ns()
            backend_env.step(action)
            samples.append(time.perf_counter_ns() - t0)
    elapsed = time.perf_counter() - started
    spec_env.close()
    p50, p99 = percentiles_us(samples)
    return {"steps": len(samples), "steps_per_s": len(samples) / elapsed, "step_p50_us": p50,
            "step_p99_us": p99}  # fmt: skip


def bench_rollout(task: str, episodes: int, policy: ExpertPolicy | None) -> dict[str, Any]:
    env = make(task)
    timed = TimedEnv(env)
    policy_ns: list[int] = []
    low, high = env.action_low, env.action_high

    def act(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if policy is None:
            return rng.uniform(low, high)
        t0 = time.perf_counter_ns()
        action = policy.act(obs, rng)
        policy_ns.append(time.perf_counter_ns() - t0)
        return action

    steps = 0
    started = time.perf_counter()
    for i in range(episodes):
        result = rollout(timed, act, reset_seed=i, rng=np.random.default_rng(i))  # type: ignore[arg-type]
        steps += len(result.rewards)
    elapsed = time.perf_counter() - started
    env.close()
    p50, p99 = percentiles_us(timed.step_ns)
    out = {"steps": steps, "steps_per_s": steps / elapsed, "step_p50_us": p50, "step_p99_us": p99}
    if policy_ns:
        out["policy_p50_us"], out["policy_p99_us"] = percentiles_us(policy_ns)
    return out


def bench_collect(task: str, episodes: int, recipe: str, policy_dir: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        job = CollectJob(task, recipe, tmp, 0, tuple(range(episodes)), policy_dir)
        started = time.perf_counter()
        summaries = collect_episodes(job)
        elapsed = time.perf_counter() - started
    steps = sum(int(s["steps"]) for s in summaries)
    return {"steps": steps, "steps_per_s": steps / elapsed}


def random_weight_policy(task: str, folder: Path) -> Path:
    """An untrained actor of the expert's shape (256x256), for timing when none is shipped."""
    with make(task) as env:
        rng = np.random.default_rng(0)
        dims = [env.observation_dim, 256, 256, 2 * env.action_dim]
        tensors = {}
        for i in range(3):
            tensors[f"net.{2 * i}.weight"] = rng.normal(size=(dims[i + 1], dims[i])) / np.sqrt(
                dims[i]
            )
            tensors[f"net.{2 * i}.bias"] = np.zeros(dims[i + 1])
        path = folder / "expert.safetensors"
        save_actor(path, tensors, env.action_low, env.action_high, -5.0, 2.0, {"task": env.task})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="walker", help="registered task")
    parser.add_argument("--episodes", type=int, default=5, help="episodes per measurement")
    parser.add_argument(
        "--out",
        default=None,
        help="write to this file instead of the section of docs/benchmarks.md",
    )
    parser.add_argument("--note", default="", help="a line about the machine's load")
    args = parser.parse_args()
    task = resolve(args.task)

    with tempfile.TemporaryDirectory() as tmp:
        try:
            policy_path = shipped_expert(task)
            policy_label = f"shipped expert ({policy_path.name})"
        except FileNotFoundError:
            policy_path = random_weight_policy(task, Path(tmp))
            policy_label = "random-weight actor of the expert's shape (no expert shipped yet)"
        policy = ExpertPolicy.load(policy_path)
        rows: list[tuple[str, dict[str, Any]]] = []
        n, expert_dir = args.episodes, str(policy_path.parent)
        measures: list[tuple[str, Callable[[], dict[str, Any]]]] = [
            ("baseline: raw simulator, random actions", lambda: bench_baseline(task, n)),
            ("rollout, random recipe", lambda: bench_rollout(task, n, None)),
            ("rollout, SAC actor (sampled)", lambda: bench_rollout(task, n, policy)),
            ("collect, random, with writing", lambda: bench_collect(task, n, "random", None)),
            ("collect, expert, with writing", lambda: bench_collect(task, n, "expert", expert_dir)),
        ]  # fmt: skip
        for label, measure in measures:
            result = measure()
            rows.append((label, result))
            print(f"{label:45s} {result['steps_per_s']:9.0f} steps/s")

    lines = [
        f"## Data collection throughput ({task}, one worker)",
        "",
        f"`python bench/collect_throughput.py --task {task} --episodes {args.episodes}`; "
        f"{_cpu_name()} ({platform.machine()}), 1 process, "
        f"1 thread, python {platform.python_version()}. Policy: {policy_label}.",
    ]
    if args.note:
        lines += ["", args.note]
    lines += [
        "",
        "| measurement | env steps/s | env.step p50 (us) | env.step p99 (us) "
        "| policy p50 / p99 (us) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for label, r in rows:
        step = f"{r['step_p50_us']:.0f} | {r['step_p99_us']:.0f}" if "step_p50_us" in r else "- | -"
        pol = (
            f"{r['policy_p50_us']:.0f} / {r['policy_p99_us']:.0f}" if "policy_p50_us" in r else "-"
        )
        lines.append(f"| {label} | {r['steps_per_s']:.0f} | {step} | {pol} |")  # fmt: skip
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    else:
        write_section("collect-throughput", text)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
