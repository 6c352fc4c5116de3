"""One PNG per calibration procedure, of its sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from calibration.io_check import IOCheckResult
from calibration.latency import LatencyResult
from calibration.return_target import ReturnTargetResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_io_check(result: IOCheckResult, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    names = result.action_names
    im = axes[0].imshow(result.similarity, cmap="RdBu", vmin=-1, vmax=1)
    axes[0].set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes[0].set_yticks(range(len(names)), [f"action {i}" for i in range(len(names))])
    axes[0].set(title="joint response: tested action vs expected actuator (cosine)")
    fig.colorbar(im, ax=axes[0], fraction=0.046)
    x = np.arange(len(names))
    axes[1].bar(x - 0.2, result.gain, 0.4, label="gain", color="tab:blue")
    axes[1].bar(x + 0.2, result.offset, 0.4, label="offset (action units)", color="tab:orange")
    axes[1].axhline(1.0, color="k", lw=0.6, ls="--")
    axes[1].axhline(0.0, color="k", lw=0.6)
    axes[1].set_xticks(x, names, rotation=45, ha="right")
    axes[1].set(title="per action: gain (expected 1) and offset (expected 0)")
    axes[1].legend()
    states = np.arange(len(result.state_names))
    axes[2].plot(states, np.diag(result.state_correlation), "o", label="correlation")
    axes[2].plot(states, result.state_gain, "x", label="gain")
    axes[2].axhline(1.0, color="k", lw=0.6, ls="--")
    axes[2].set_xticks(states, result.state_names, rotation=90, fontsize=7)
    axes[2].set(title="per state element vs expected (1 = right)", ylim=(-1.5, 1.5))
    axes[2].legend()
    verdict = "OK" if result.ok else f"{len(result.problems)} problem(s)"
    fig.suptitle(f"{result.task}: I/O map check, {verdict}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_latency(result: LatencyResult, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
    axes[0].hist(result.round_trip_ms, bins=50, color="tab:green")
    for q, ls in ((50, "-"), (99, "--")):
        v = float(np.percentile(result.round_trip_ms, q))
        axes[0].axvline(v, color="k", ls=ls, lw=0.8, label=f"p{q} {v:.2f} ms")
    axes[0].set(title="round trip to the node", xlabel="ms", ylabel="requests")
    axes[0].legend()
    axes[1].hist(result.work_ms, bins=50, color="tab:purple", alpha=0.7, label="tick work")
    axes[1].hist(
        result.timer_lateness_ms, bins=50, color="tab:gray", alpha=0.7, label="timer lateness"
    )
    axes[1].axvline(result.deadline_margin_ms, color="k", ls="--", label="margin")
    axes[1].set(title="after the reply: work and wake-up", xlabel="ms")
    axes[1].legend()
    rates = [t.rate_hz for t in result.trials]
    x = np.arange(len(rates))
    axes[2].bar(x - 0.2, [100 * t.miss_fraction for t in result.trials], 0.4, label="missed %")
    axes[2].bar(x + 0.2, [t.jitter_ms_p99 for t in result.trials], 0.4, label="jitter p99 ms")
    axes[2].set_xticks(x, [f"{r:g}" + ("*" if r == result.control_hz else "") for r in rates])
    axes[2].set(title="realtime loop per rate (* recommended)", xlabel="Hz")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_return_target(result: ReturnTargetResult, path: Path, task: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    mean, std = result.returns.mean(axis=1), result.returns.std(axis=1)
    ax.errorbar(result.fractions, mean, yerr=std, marker="o", capsize=3)
    for p, r in zip(result.fractions, result.returns):
        ax.plot([p] * len(r), r, ".", color="tab:gray", alpha=0.6)
    ax.axvline(
        result.best_fraction, color="tab:red", ls="--", label=f"best p={result.best_fraction:g}"
    )
    ax.set(
        title=f"{task}: return vs target fraction ({result.returns.shape[1]} episodes each)",
        xlabel="target fraction p (R* = min + p (max - min))",
        ylabel="episode return",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
