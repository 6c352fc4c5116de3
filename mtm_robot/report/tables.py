"""Tables and figures of the evaluation report, from the job results of :mod:`.run_all`.

Each study owns one section of docs/benchmarks.md (:func:`.page.write_section`); every
cell is a mean ± std over training seeds of that seed's mean over evaluation episodes (scores)
or its held-out error. The README's headline table and figure come from the same results.
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mtm_robot.report.page import (
    BENCHMARKS,
    FIGURES,
    README,
    cell,
    hardware,
    mean_std,
    write_section,
)
from mtm_robot.report.studies import Job, Plan, load_results

ERRORS = {  # table row -> (MTM metric, MLP job kind, MLP metric)
    "ID error": ("inverse_dynamics_error", "inverse_dynamics", "inverse_dynamics_error"),
    "FD error": ("forward_dynamics_error", "forward_dynamics", "forward_dynamics_error"),
}
SCORES = {  # table row -> (MTM mode, MLP job kind)
    "BC score": ("behavior_cloning", "behavior_cloning"),
    "RCBC score": ("return_conditioned", "return_conditioned"),
}


class Results:
    """Per-seed values of the finished jobs."""

    def __init__(self, plan: Plan, out: Path) -> None:
        self.plan = plan
        self.out = out
        self.by_job = load_results(out, plan)

    def _matching(self, **fields: Any) -> list[dict[str, Any]]:
        return [
            r
            for job, r in self.by_job.items()
            if all(getattr(job, k) == v for k, v in fields.items())
        ]

    def scores(self, mode: str, **fields: Any) -> list[float]:
        """One value per seed: the mean normalised score over its evaluation episodes."""
        return [
            float(np.mean(r["scores"][mode])) for r in self._matching(**fields)
            if mode in r.get("scores", {})
        ]  # fmt: skip

    def metric(self, name: str, **fields: Any) -> list[float]:
        return [
            float(r["metrics"][name]) for r in self._matching(**fields)
            if name in r.get("metrics", {}) and math.isfinite(float(r["metrics"][name]))
        ]  # fmt: skip

    def steps(self, kind: str) -> str:
        mtm = kind == "mtm"
        values = sorted(
            {int(r["steps"]) for j, r in self.by_job.items() if (j.kind == "mtm") == mtm}
        )
        return "/".join(str(v) for v in values) or "n/a"

    def devices(self) -> str:
        return ", ".join(sorted({str(r.get("device", "?")) for r in self.by_job.values()}))


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def _preamble(res: Results, seeds: tuple[int, ...] | None = None) -> str:
    """Budget, configurations, seeds and evaluation protocol of a section."""
    b = res.plan.budget
    trained = [int(r["steps"]) for j, r in res.by_job.items() if j.kind == "mtm"]
    cut = ""
    if trained and max(trained) < b.mtm_steps:
        cut = (
            f" The deadline cut the MTMs from {b.mtm_steps} to {max(trained)} steps (every MTM "
            "of the run trained at once and they agreed on one step count)."
        )
        if max(trained) < b.mtm_steps / 4:
            cut += " They are undertrained: the MTM columns say more about the budget than MTM."
    has_mlp = any(j.kind != "mtm" for j in res.by_job)
    mlp = f", MLPs (reference 5.6) with {list(b.mlp_overrides)}" if has_mlp else ""
    return (
        f"Budget `{b.name}`: training seeds {list(seeds or b.seeds)}, MTM "
        f"`launch/configs/mtm_walker.yaml` with {list(b.mtm_overrides) or 'no overrides'} for "
        f"{res.steps('mtm')} steps{mlp}; {b.eval_episodes} evaluation episodes per policy "
        f"(reset seeds 40,000,000 + i, never used for data), return target = top of each "
        f"model's training return range. Trained on: {res.devices()}.{cut}"
    )


def _budget_tag(res: Results) -> str:
    """Sections of a budget with its own sections say which budget in their title."""
    b = res.plan.budget
    return f", budget `{b.name}`" if b.section_suffix else ""


def _command(args: argparse.Namespace) -> str:
    """The command line(s) that produced the section."""
    argv = getattr(args, "argv", None) or sys.argv
    this = " ".join(["python", "-m", "mtm_robot.report", *map(shlex.quote, argv[1:])])
    produced_by = getattr(args, "produced_by", "")
    if produced_by:
        command, _, where = produced_by.partition("|")
        where = f" ({where.strip()})" if where else ""
        return f"Training and evaluation: `{command.strip()}`{where}; tables: `{this}`"
    return f"Command: `{this}`"


# -- versatility -----------------------------------------------------------------------------
def versatility(res: Results, args: argparse.Namespace) -> tuple[str, dict[str, bool]]:
    rows, fd_ok, rc_ok = [], [], []
    for dataset in res.plan.budget.datasets:
        for label, (mode, kind) in SCORES.items():
            mlp = res.scores(kind, kind=kind, dataset=dataset, episodes=0)
            mtm = res.scores(mode, kind="mtm", dataset=dataset, episodes=0, masks="default")
            rows.append(f"| {dataset} | {label} | {cell(mlp)} | {cell(mtm)} |")
            if label == "RCBC score" and mlp and mtm:
                rc_ok.append(_mean(mtm) >= _mean(mlp) - 3.0)
        for label, (mtm_metric, kind, mlp_metric) in ERRORS.items():
            mlp = res.metric(mlp_metric, kind=kind, dataset=dataset, episodes=0)
            mtm = res.metric(mtm_metric, kind="mtm", dataset=dataset, episodes=0, masks="default")
            rows.append(f"| {dataset} | {label} | {cell(mlp, 3)} | {cell(mtm, 3)} |")
            if label == "FD error" and mlp and mtm:
                fd_ok.append(_mean(mtm) <= _mean(mlp))
    goals = {
        "fd": bool(fd_ok) and all(fd_ok),
        "rc": bool(rc_ok) and all(rc_ok),
    }
    md = f"""## Versatility: one MTM against specialised MLPs, walker-walk (issue 8, reference 7.2){_budget_tag(res)}

One MTM per dataset and seed (the same weights answer every row, chosen by the mask) against
four MLPs, each trained for one task. Scores: normalised return (higher is better), MTM in
`behavior_cloning` / `return_conditioned` mode, MLP-BC / MLP-RCBC. ID / FD: held-out
normalised error (lower is better) on the validation episodes: MSE / mean squared change of
the action (ID) or state (FD) between steps. The MTM's FD sees the segment's earlier states
and the action (its mask, reference 4.4); the MLP's sees (s_t, a_t).
{_preamble(res)}

| dataset | task | MLP | MTM |
| --- | --- | --- | --- |
{chr(10).join(rows)}

Goals: MTM forward-dynamics error at most the MLP's on every dataset: **{_verdict(goals["fd"], fd_ok)}**;
MTM return-conditioned within 3 points of MLP-RCBC on every dataset: **{_verdict(goals["rc"], rc_ok)}**.
Report written on: {hardware()}.

{_command(args)}
"""  # noqa: E501
    return md, goals


def _verdict(ok: bool, checks: list[bool]) -> str:
    if not checks:
        return "not measured"
    return f"met ({sum(checks)}/{len(checks)})" if ok else f"not met ({sum(checks)}/{len(checks)})"


# -- data efficiency -------------------------------------------------------------------------
def data_efficiency(res: Results, args: argparse.Namespace) -> str:
    from mtm_robot.data.episodes import episode_paths

    total = len(episode_paths(args.data_root / "expert")) or 50
    counts = [*sorted(set(res.plan.budget.fractions)), 0]  # 0: the whole store
    rows: list[str] = []
    series: dict[str, list[tuple[float, float, float]]] = {
        "MLP-RCBC": [],
        "MTM": [],
        "heteromodal MTM": [],
    }
    for n in counts:
        k = n or total
        rc = "return_conditioned"
        mlp = res.scores(rc, kind=rc, dataset="expert", episodes=n)
        mtm = res.scores(rc, kind="mtm", dataset="expert", episodes=n, masks="default",
                         action_free_rest=False)  # fmt: skip
        het = res.scores(rc, kind="mtm", dataset="expert", episodes=n, action_free_rest=True)
        het_cell = cell(het) if n else ""
        rows.append(f"| {k} ({100 * k / total:.0f}%) | {cell(mlp)} | {cell(mtm)} | {het_cell} |")
        for name, values in (("MLP-RCBC", mlp), ("MTM", mtm), ("heteromodal MTM", het)):
            if values:
                series[name].append((100 * k / total, *mean_std(values)))
    figure = _plot_data_efficiency(series, getattr(args, "no_write", False))
    picture = f"\n![data efficiency](figures/{figure.name})\n" if figure else ""
    md = f"""## Data efficiency, walker-walk expert (issue 8, reference 7.5){_budget_tag(res)}

MTM and MLP-RCBC trained on the first N of the {total} expert episodes (all with actions),
scored in `return_conditioned` mode; the heteromodal MTM adds the other episodes without
actions. {_preamble(res)}

| labelled episodes | MLP-RCBC | MTM | heteromodal MTM |
| --- | --- | --- | --- |
{chr(10).join(rows)}
{picture}
Report written on: {hardware()}.

{_command(args)}
"""
    return md


def _plot_data_efficiency(
    series: dict[str, list[tuple[float, float, float]]], dry: bool
) -> Path | None:
    if dry or not any(series.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, points in series.items():
        if not points:
            continue
        x, m, s = (np.asarray(v) for v in zip(*sorted(points)))
        ax.errorbar(x, m, yerr=s, marker="o", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("% of expert episodes with actions")
    ax.set_ylabel("normalised score (RC mode)")
    ax.set_title("walker-walk: score against labelled data")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / "data_efficiency.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- masking ---------------------------------------------------------------------------------
def masking(res: Results, args: argparse.Namespace) -> str:
    b = res.plan.budget
    dataset = b.masking_dataset
    rc = "return_conditioned"
    where = {"kind": "mtm", "dataset": dataset, "episodes": 0}
    specialised = _mean(res.scores(rc, masks=rc, **where))
    rows = []
    for preset in ("default", *b.masking_presets):
        scores = res.scores(rc, masks=preset, **where)
        idm = res.metric("inverse_dynamics_error", masks=preset, **where)
        fdm = res.metric("forward_dynamics_error", masks=preset, **where)
        ok = scores and specialised and specialised > 0
        rel = f"{_mean(scores) / specialised:.2f}" if ok else "n/a"
        label = {"default": "shipped mix (random-autoregressive + ID + RC)"}.get(preset, preset)
        rows.append(f"| {label} | {cell(scores)} | {rel} | {cell(idm, 3)} | {cell(fdm, 3)} |")
    return f"""## Masking ablation, walker-walk {dataset} (issue 8, reference 7.3){_budget_tag(res)}

The same MTM trained with each masking pattern alone (and the shipped mix), scored in
`return_conditioned` mode; "relative" divides by the specialised `return_conditioned`-mask
model's score, as the paper's figure does. ID / FD: held-out normalised errors.
{_preamble(res)}

| training masks | RC score | relative to specialised | ID error | FD error |
| --- | --- | --- | --- | --- |
{chr(10).join(rows)}

Report written on: {hardware()}.

{_command(args)}
"""


# -- heteromodal -----------------------------------------------------------------------------
def heteromodal(res: Results, args: argparse.Namespace) -> str:
    b = res.plan.budget
    rows, gains = [], []
    for n in b.heteromodal_labelled:
        cells = {}
        for arm, rest in (("labelled-only", False), ("heteromodal", True)):
            for mode in ("return_conditioned", "two_stage"):
                where = {"dataset": "expert", "episodes": n, "action_free_rest": rest}
                cells[arm, mode] = res.scores(mode, kind="mtm", **where)
            rows.append(
                f"| {n} | {arm} | {0 if not rest else 'the other expert episodes'} | "
                f"{cell(cells[arm, 'return_conditioned'])} | {cell(cells[arm, 'two_stage'])} |"
            )
        for mode in ("return_conditioned", "two_stage"):
            a, h = cells["labelled-only", mode], cells["heteromodal", mode]
            if a and h:
                gains.append((n, mode, _mean(h) - _mean(a)))
    met = any(g >= 10 for _, _, g in gains) if gains else None
    gain_text = "; ".join(f"{n} labelled, {mode}: {g:+.1f}" for n, mode, g in gains) or "n/a"
    verdict = "not measured" if met is None else ("met" if met else "not met")
    md = f"""## Heteromodal training, walker-walk (issue 6, reference 5.3){_budget_tag(res)}

Labelled-only against heteromodal: the first N expert episodes with actions, against the same
plus every other expert episode with its actions dropped (half the batches state-only,
reference 5.3). Same configuration and step count for both arms; evaluated in
`return_conditioned` and `two_stage` mode. Cells: mean ± std over training seeds
{list(b.heteromodal_seeds)} of each seed's mean over {b.eval_episodes} evaluation episodes.
{_preamble(res, b.heteromodal_seeds)}

| labelled episodes | arm | action-free episodes | return_conditioned | two_stage |
| --- | --- | --- | --- | --- |
{chr(10).join(rows)}

Gain of heteromodal over labelled-only (points): {gain_text}.
Goal (at least +10 points): **{verdict}**.
Report written on: {hardware()}.

{_command(args)}
"""
    return md


# -- systems ---------------------------------------------------------------------------------
SYSTEMS = (  # section, what it measures, its same-run baseline
    ("train-throughput", "training step time", "the eager fp32 reference implementation"),
    ("serve-latency", "inference node latency and throughput", "the eager forward"),
    ("loop-timing", "control loop period jitter and deadline misses", "a trivial policy"),
    ("recording-overhead", "recorder cost per control tick", "a no-op call"),
    ("collect-throughput", "simulator data collection", "the raw simulator step"),
)


def systems() -> str:
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else ""
    rows = []
    for name, what, baseline in SYSTEMS:
        match = re.search(f"<!-- bench:{name} -->(.*?)<!-- /bench:{name} -->", text, re.S)
        if not match:
            rows.append(f"| {what} | not run | | |")
            continue
        body = match.group(1)
        title = re.search(r"^## (.+)$", body, re.M)
        command = re.search(r"^Command: `(.+?)`", body, re.M)
        hw = re.search(r"Hardware[^:]*: (.+?)\.?$", body, re.M)
        anchor = _anchor(title.group(1)) if title else name
        rows.append(
            f"| [{what}](#{anchor}) | {baseline} | {hw.group(1) if hw else 'see section'} | "
            f"{'`' + command.group(1) + '`' if command else 'see section'} |"
        )
    return f"""## Systems figures (issue 8): where each lives

Each systems benchmark writes its own section below or above, with a baseline measured in
the same run, p50 and p99, and the hardware; this table gathers them.

| measurement | same-run baseline | hardware | command |
| --- | --- | --- | --- |
{chr(10).join(rows)}
"""


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


# -- README ----------------------------------------------------------------------------------
def readme_headline(res: Results) -> str:
    """The README's table of the paper comparisons, and the representation figure."""
    rows = []
    rc = "return_conditioned"
    for dataset in res.plan.budget.datasets:
        whole = {"dataset": dataset, "episodes": 0}
        mtm = res.scores(rc, kind="mtm", masks="default", **whole)
        mlp = res.scores(rc, kind=rc, **whole)
        fd_mtm = res.metric("forward_dynamics_error", kind="mtm", masks="default", **whole)
        fd_mlp = res.metric("forward_dynamics_error", kind="forward_dynamics", **whole)
        rows.append(
            f"| {dataset} | {cell(mtm)} | {cell(mlp)} | {cell(fd_mtm, 3)} | {cell(fd_mlp, 3)} |"
        )
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else ""
    verdicts = []
    for name, label in (("heteromodal", "Heteromodal"), ("representation", "Representation")):
        body = re.search(f"<!-- bench:{name} -->(.*?)<!-- /bench:{name} -->", text, re.S)
        goal = re.search(r"Goal[^*]*\*\*([^*]+)\*\*", body.group(1)) if body else None
        if goal:
            verdicts.append(f"{label} goal: {goal.group(1)}.")
    curves = FIGURES / "representation_curves.png"
    picture = (
        "\nTD3+BC on raw states against frozen MTM state representations "
        "(mtm_robot/report/representation.py, 3 seeds):\n\n![representation curves]"
        "(docs/figures/representation_curves.png)\n"
        if curves.exists()
        else ""
    )
    command = f"python -m mtm_robot.report --budget {res.plan.budget.name}"
    b = res.plan.budget
    trained = [int(r["steps"]) for j, r in res.by_job.items() if j.kind == "mtm"]
    steps = f"MTMs trained {res.steps('mtm')} steps"
    seeds = (
        f"mean ± std over training seeds {list(b.seeds)}"
        if len(b.seeds) > 1
        else f"one training seed ({b.seeds[0]})"
    )
    if trained and max(trained) < b.mtm_steps:
        steps += f" (cut from {b.mtm_steps} by the budget's deadline)"
    return f"""Paper comparisons on walker-walk (`{command}`, {steps}; one MTM per dataset against
specialised MLPs; normalised scores, higher is better; forward dynamics error, lower is
better; {seeds}; full tables, hardware and
commands in [docs/benchmarks.md](docs/benchmarks.md)):

| dataset | MTM return-conditioned | MLP-RCBC | MTM forward-dynamics error | MLP-FD error |
| --- | --- | --- | --- | --- |
{chr(10).join(rows)}

{" ".join(verdicts)}
{picture}"""


def write_readme(markdown: str, path: Path = README) -> None:
    begin, end = "<!-- report:headline -->", "<!-- /report:headline -->"
    text = path.read_text()
    block = f"{begin}\n{markdown.strip()}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.replace("\n## What is in the box", f"\n{block}\n\n## What is in the box", 1)
    path.write_text(text)


# -- the report ------------------------------------------------------------------------------
def write_report(plan: Plan, args: argparse.Namespace, wall_s: float) -> None:
    res = Results(plan, args.out)
    studies = set(args.studies)
    sections: dict[str, str] = {}
    if "versatility" in studies:
        sections["versatility"], _ = versatility(res, args)
    if "data_efficiency" in studies:
        sections["data-efficiency"] = data_efficiency(res, args)
    if "masking" in studies:
        sections["masking"] = masking(res, args)
    if "heteromodal" in studies:
        sections["heteromodal"] = heteromodal(res, args)
    suffix = plan.budget.section_suffix
    sections = {f"{name}{suffix}": md for name, md in sections.items()}
    sections["systems"] = systems()
    for name, md in sections.items():
        print(md)
        if not args.no_write:
            write_section(name, md)
    if "versatility" in studies:
        headline = readme_headline(res)
        print(headline)
        if not args.no_write:
            write_readme(headline)
    print(f"report of {len(res.by_job)} jobs written in {wall_s:.0f} s (whole run)")


def run_representation(plan: Plan, args: argparse.Namespace) -> None:
    """TD3+BC on raw states against frozen representations of the budget's medium MTM."""
    from mtm_robot.report import representation

    checkpoint = args.out / "jobs" / Job("mtm", "medium", plan.budget.seeds[0]).name
    argv = [
        "--data", str(args.data_root / "medium"),
        "--checkpoint", str(checkpoint / "checkpoints" / "latest"),
        "--out", str(args.out / "representation"),
        "--threads", str(args.threads),
        *({"quick": ["--steps", "10000", "--eval-every", "2000", "--eval-episodes", "5",
                     "--seeds", "0"]}.get(plan.budget.name, [])),
    ]  # fmt: skip
    if args.no_write:
        argv.append("--no-write")
    representation.main(argv)
