"""The output of a sim-control session: summary table, run directory, plots.

The run directory holds ``telemetry_NNN.npz`` (one column per :class:`~controllers.loop.TickRecord`
field), ``summary.json``, ``session.png`` (score, latency against the deadline, timing and
fallback level per tick; x in seconds when realtime, in ticks when lockstep) and, for
inverse_dynamics runs, ``tracking.png`` (the tracking error and the most moved state dims).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from controllers.fallback import LEVELS, MODEL_LEVEL
from controllers.loop import EpisodeResult
from controllers.session import SessionResult

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


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


def backend_of(model: dict[str, Any]) -> str:
    """The served model's backend from its node's metadata: ``onnx (cpu)``, ``torch (cuda)``."""
    backend = model.get("backend")
    if not isinstance(backend, dict) or not backend.get("name"):
        return "unknown"
    return f"{backend['name']} ({backend.get('device', 'cpu')})"


def aggregate(result: SessionResult) -> dict[str, Any]:
    returns = np.array([s["return"] for s in result.summaries])
    scores = np.array([s["normalized_score"] for s in result.summaries])
    lat = np.concatenate(
        [np.zeros(0)] + [e.telemetry.arrays()["latency_s"] for e in result.episodes]
    )
    lat = lat[np.isfinite(lat)]
    return {
        "task": result.task,
        "model_id": result.model.get("model_id"),
        "backend": backend_of(result.model),  # the node's: onnx (cpu), torch (cpu), ...
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
        "return_target": result.return_target,  # as given (given, units) and as sent (model)
        **({"recording_error": result.recording_error} if result.recording_error else {}),
    }


def write_run_dir(result: SessionResult, run_dir: Path) -> dict[str, Any]:
    """Telemetry per episode (npz), summary.json, and PNG plots; returns the JSON summary."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for i, episode in enumerate(result.episodes):
        arrays = episode.telemetry.arrays()
        np.savez_compressed(run_dir / f"telemetry_{i:03d}.npz", **arrays)  # type: ignore[arg-type]
    summary = {**aggregate(result), "per_episode": result.summaries}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    if result.episodes:  # none when Ctrl-C came during the first
        plot(result, run_dir)
    return summary


def plot(result: SessionResult, run_dir: Path) -> list[Path]:
    """``session.png`` (score, latency against the deadline, timing and fallback per tick) and,
    when the episodes tracked a reference (inverse_dynamics), ``tracking.png``."""
    figures = {"session.png": session_figure(result), "tracking.png": tracking_figure(result)}
    written = []
    for name, fig in figures.items():
        if fig is not None:
            fig.savefig(run_dir / name, dpi=90)
            written.append(run_dir / name)
    return written


def _ticks_axis(episode: EpisodeResult) -> tuple[np.ndarray, str]:
    """The x values of an episode's ticks and their label: seconds since the episode started
    when paced on the wall clock, the tick index in lockstep (there time is simulated)."""
    if episode.realtime:
        t_s = np.asarray(episode.telemetry.t_s)
        return t_s - (t_s[0] if len(t_s) else 0.0), "time in episode (s)"
    period_ms = episode.nominal_period_s * 1e3
    return np.arange(episode.ticks), f"tick (lockstep; one tick = {period_ms:g} ms simulated)"


def _label(i: int, episode: EpisodeResult) -> str:
    return f"ep {i} (seed {episode.seed})"


def session_figure(result: SessionResult) -> Figure:
    """Score per episode; the latency histogram with the deadline; per tick, the loop period
    (realtime) or the request latency (lockstep) and the fallback level."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 8), layout="constrained")
    (score_ax, latency_ax), (timing_ax, level_ax) = fig.subplots(2, 2)
    episodes = result.episodes
    pacing = "realtime" if all(e.realtime for e in episodes) else "lockstep"
    fig.suptitle(
        f"{result.task}, model {result.model.get('model_id')}: {len(episodes)} episode(s), {pacing}"
    )
    _score_panel(score_ax, result)
    _latency_panel(latency_ax, episodes)
    for i, episode in enumerate(episodes):
        x, xlabel = _ticks_axis(episode)
        tel = episode.telemetry.arrays()
        missed = tel["level"] != MODEL_LEVEL
        if episode.realtime:
            y = tel["period_s"] * 1e3
            timing_ax.set(title="loop period per tick", ylabel="period (ms)")
        else:
            y = tel["latency_s"] * 1e3
            timing_ax.set(title="request latency per tick", ylabel="latency (ms)")
        (line,) = timing_ax.plot(x, y, lw=0.8, label=_label(i, episode))
        if missed.any():
            timing_ax.plot(
                x[missed],
                np.full(missed.sum(), np.nanmax(y) if np.isfinite(y).any() else 0.0),
                "x",
                color="tab:red",
                label="missed deadline" if i == 0 else None,
            )
        level_ax.step(
            x,
            [LEVELS.index(lv) for lv in tel["level"]],
            where="post",
            color=line.get_color(),
            lw=0.9,
            label=_label(i, episode),
        )
        down = tel["node_down"]
        if down.any():
            level_ax.fill_between(
                x,
                0,
                len(LEVELS) - 1,
                where=down,
                step="post",
                color="tab:red",
                alpha=0.15,
                label="node down" if i == 0 else None,
            )
        timing_ax.set_xlabel(xlabel)
        level_ax.set_xlabel(xlabel)
    if episodes and episodes[0].realtime:
        top = max([np.nanmax(e.telemetry.arrays()["period_s"]) for e in episodes if e.ticks])
        nominal_ms = episodes[0].nominal_period_s * 1e3
        timing_ax.set_ylim(0, max(2 * nominal_ms, 1.1e3 * top))  # the nominal period mid-height
        timing_ax.axhline(
            episodes[0].nominal_period_s * 1e3,
            color="k",
            ls=":",
            lw=1,
            label=f"nominal {episodes[0].nominal_period_s * 1e3:g} ms",
        )
    elif episodes:
        _deadline_line(timing_ax, episodes[0], vertical=False)
    level_ax.set(
        title="who answered each tick (the model, or a fallback level)",
        yticks=range(len(LEVELS)),
        yticklabels=LEVELS,
        ylim=(-0.3, len(LEVELS) - 0.7),
    )
    for ax in (timing_ax, level_ax):
        if len(episodes) <= 8 and ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    timing_ax.ticklabel_format(axis="y", useOffset=False)
    return fig


def _score_panel(ax: Axes, result: SessionResult) -> None:
    scores = np.array([s["normalized_score"] for s in result.summaries], dtype=float)
    use_score = bool(len(scores)) and bool(np.isfinite(scores).all())
    values = scores if use_score else np.array([s["return"] for s in result.summaries], float)
    seeds = [str(s["seed"]) for s in result.summaries]
    bars = ax.bar(range(len(values)), values, color="tab:blue", width=0.6)
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    ax.set_xticks(range(len(values)), [f"{i}\nseed {s}" for i, s in enumerate(seeds)])
    if len(values) > 10:  # too many to name each one
        ax.set_xticks(range(0, len(values), max(1, len(values) // 10)))
    ax.set(
        title="normalised score per episode" if use_score else "return per episode",
        xlabel="episode",
        ylabel="score (100 = expert)" if use_score else "episode return",
    )
    ax.set_xlim(-0.5 - (len(values) < 3), len(values) - 0.5 + (len(values) < 3))


def _latency_panel(ax: Axes, episodes: list[EpisodeResult]) -> None:
    tel = [e.telemetry.arrays() for e in episodes]
    lat = np.concatenate([t["latency_s"] for t in tel]) * 1e3 if tel else np.zeros(0)
    lat = lat[np.isfinite(lat)]
    misses = sum(int(np.sum(t["level"] != MODEL_LEVEL)) for t in tel)
    ticks = sum(len(t["level"]) for t in tel)
    if len(lat):
        ax.hist(lat, bins=50, color="tab:green", label=f"{len(lat)} replies")
        for q, ls in ((50, "-"), (99, "--")):
            ax.axvline(
                np.percentile(lat, q),
                color="tab:green",
                ls=ls,
                lw=1,
                label=f"p{q} {np.percentile(lat, q):.2f} ms",
            )
    if episodes:
        _deadline_line(ax, episodes[0], vertical=True)
    ax.set(
        title=f"request latency: {misses} of {ticks} ticks missed their deadline",
        xlabel="latency (ms)",
        ylabel="ticks",
    )
    ax.legend(fontsize=8)


def _deadline_line(ax: Axes, episode: EpisodeResult, vertical: bool) -> None:
    """The realtime request budget (period less the margin) as a red line, ``gid`` deadline."""
    if not math.isfinite(episode.budget_s):
        return
    ms = episode.budget_s * 1e3
    label = f"deadline {ms:.2f} ms" + ("" if episode.realtime else " (if realtime; lockstep waits)")
    line = ax.axvline if vertical else ax.axhline
    line(ms, color="tab:red", ls="--", lw=1.2, label=label, gid="deadline")


def tracking_error(episode: EpisodeResult) -> np.ndarray:
    """Per tick ``t``: the RMS over the state of (state[t+1] - target[t]), each dimension in
    units of the reference targets' std over the episode; (ticks - 1,), nan without a target."""
    tel = episode.telemetry.arrays()
    states, target = tel["state"], tel["target"]
    if len(states) < 2:
        return np.zeros(0)
    scale = np.nanstd(target, axis=0) if np.isfinite(target).any() else np.ones(states.shape[1])
    scale = np.where(np.isfinite(scale) & (scale > 1e-6), scale, 1.0)
    diff = (states[1:] - target[:-1]) / scale
    return np.sqrt(np.mean(diff**2, axis=1))


def tracking_figure(result: SessionResult, dims: int = 2, window: int = 200) -> Figure | None:
    """inverse_dynamics: the tracking error per tick, and the ``dims`` state dimensions the
    reference moves most, reached vs desired (the first ``window`` ticks of the first episode,
    where a line can still be followed); None when no episode tracked a reference."""
    tracked = [
        (i, e)
        for i, e in enumerate(result.episodes)
        if len(e.telemetry.target) and np.isfinite(e.telemetry.arrays()["target"]).any()
    ]
    if not tracked:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 4.5), layout="constrained")
    error_ax, states_ax = fig.subplots(1, 2)
    fig.suptitle(f"{result.task}: tracking the reference (inverse_dynamics)")
    for i, episode in tracked:
        x, xlabel = _ticks_axis(episode)
        error = tracking_error(episode)
        error_ax.plot(
            x[1:], error, lw=0.8, label=f"{_label(i, episode)}: mean {np.nanmean(error):.2f}"
        )
        error_ax.set_xlabel(xlabel)
    error_ax.set(
        title="tracking error: reached state vs the state asked for",
        ylabel="RMS error (reference std units)",
    )
    error_ax.set_ylim(bottom=0)
    if len(tracked) <= 8:
        error_ax.legend(fontsize=8)
    i, episode = tracked[0]
    x, xlabel = _ticks_axis(episode)
    tel = episode.telemetry.arrays()
    moved = np.argsort(np.nanstd(tel["target"], axis=0))[::-1][:dims]
    shown = slice(1, window + 1)
    for d in moved:
        (line,) = states_ax.plot(
            x[shown], tel["state"][shown, d], lw=1, label=f"state[{d}] reached"
        )
        states_ax.plot(
            x[shown],
            tel["target"][: min(window, len(x) - 1), d],
            lw=1,
            ls="--",
            color=line.get_color(),
            label=f"state[{d}] asked for",
        )
    states_ax.set(
        title=f"the {len(moved)} state dims the reference moves most\n"
        f"({_label(i, episode)}, first {min(window, len(x) - 1)} ticks)",
        xlabel=xlabel,
        ylabel="state value (observation units)",
    )
    states_ax.legend(fontsize=8, ncol=2)
    return fig
