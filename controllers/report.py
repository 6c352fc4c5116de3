"""The output of a sim-control session: summary table, run directory, plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from controllers.session import SessionResult


def _fmt(x: float, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def summary_table(result: SessionResult) -> str:
    """A plain-text table: one row per episode, then the mean (and std) row."""
    head = (
        "episode",
        "seed",
        "return",
        "score",
        "ticks",
        "misses",
        "fallback",
        "lat p50 ms",
        "lat p99 ms",
        "jitter p99 ms",
        "surprise",
    )
    rows = []
    for i, s in enumerate(result.summaries):
        fallback = sum(s["fallback_ticks"].values())
        rows.append(
            (
                str(i),
                str(s["seed"]),
                _fmt(s["return"]),
                _fmt(s["normalized_score"]),
                str(s["ticks"]),
                str(s["deadline_misses"]),
                str(fallback),
                _fmt(s["latency_ms_p50"], 2),
                _fmt(s["latency_ms_p99"], 2),
                _fmt(s["jitter_ms_p99"], 2),
                _fmt(s["surprise_mean"], 3),
            )
        )
    agg = aggregate(result)
    rows.append(
        (
            "mean",
            "",
            f"{_fmt(agg['return_mean'])}±{_fmt(agg['return_std'])}",
            f"{_fmt(agg['score_mean'])}±{_fmt(agg['score_std'])}",
            str(agg["ticks"]),
            str(agg["deadline_misses"]),
            str(agg["fallback_ticks"]),
            "",
            "",
            "",
            "",
        )
    )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def aggregate(result: SessionResult) -> dict[str, Any]:
    returns = np.array([s["return"] for s in result.summaries])
    scores = np.array([s["normalized_score"] for s in result.summaries])
    lat = np.concatenate([e.telemetry.arrays()["latency_s"] for e in result.episodes])
    lat = lat[np.isfinite(lat)]
    return {
        "task": result.task,
        "model_id": result.model.get("model_id"),
        "episodes": len(result.summaries),
        "return_mean": float(returns.mean()) if len(returns) else float("nan"),
        "return_std": float(returns.std()) if len(returns) else float("nan"),
        "score_mean": float(scores.mean()) if len(scores) else float("nan"),
        "score_std": float(scores.std()) if len(scores) else float("nan"),
        "ticks": int(sum(s["ticks"] for s in result.summaries)),
        "deadline_misses": int(sum(s["deadline_misses"] for s in result.summaries)),
        "fallback_ticks": int(sum(sum(s["fallback_ticks"].values()) for s in result.summaries)),
        "latency_ms_p50": float(np.percentile(lat, 50) * 1e3) if len(lat) else float("nan"),
        "latency_ms_p99": float(np.percentile(lat, 99) * 1e3) if len(lat) else float("nan"),
        "jitter_ms_p99": float(np.nanmax([s["jitter_ms_p99"] for s in result.summaries]))
        if result.summaries
        else float("nan"),
        "wall_s": result.wall_s,
        "ended_by": result.ended_by,  # "" unless the run stopped early (its node was lost)
        "node_events": result.node_events,  # the owned node's deaths and restarts
        **({"recording_error": result.recording_error} if result.recording_error else {}),
    }


def write_run_dir(result: SessionResult, run_dir: Path) -> dict[str, Any]:
    """Telemetry per episode (npz), summary.json, and PNG plots; returns the JSON summary."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for i, episode in enumerate(result.episodes):
        np.savez(run_dir / f"telemetry_{i:03d}.npz", **episode.telemetry.arrays())  # type: ignore[arg-type]
    summary = {**aggregate(result), "per_episode": result.summaries}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    plot(result, run_dir)
    return summary


def plot(result: SessionResult, run_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    scores = [s["normalized_score"] for s in result.summaries]
    axes[0].bar(range(len(scores)), scores, color="tab:blue")
    axes[0].set(
        title=f"{result.task}: normalised score per episode",
        xlabel="episode",
        ylabel="score (100 = expert)",
    )
    lat = np.concatenate([e.telemetry.arrays()["latency_s"] for e in result.episodes]) * 1e3
    lat = lat[np.isfinite(lat)]
    if len(lat):
        axes[1].hist(lat, bins=50, color="tab:green")
    axes[1].set(title="request latency", xlabel="ms", ylabel="ticks")
    for i, episode in enumerate(result.episodes):
        period = episode.telemetry.arrays()["period_s"][1:] * 1e3
        axes[2].plot(period, lw=0.6, label=f"ep {i}")
    axes[2].set(title="loop period over time", xlabel="tick", ylabel="ms")
    fig.tight_layout()
    fig.savefig(run_dir / "session.png", dpi=90)
    plt.close(fig)
