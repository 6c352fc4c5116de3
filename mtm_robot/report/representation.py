"""Do frozen MTM state representations speed up an offline actor-critic? (issue 8, reference 6)

TD3+BC (Fujimoto & Gu 2021) on a walker-walk episode store, in two arms that differ only in
the features the actor and the critics see:

* ``raw``: the 24-d walker observation, z-scored with the dataset's statistics;
* ``mtm-frozen``: ``MTM.represent`` of the observation normalised with the checkpoint's
  normaliser (a length-1, state-only segment through the encoder, reference 6), frozen:
  computed once for every dataset state under ``torch.no_grad`` and per step at evaluation.

Everything else is shared: seed, batch order, target noise, gradient steps, hyperparameters
(:class:`TD3BCConfig`: twin critics, target policy smoothing 0.2 clipped at 0.5, policy delay 2,
tau 0.005, discount 0.99, Adam 3e-4, hidden 256 x 2, batch 256, alpha 2.5 in
``actor loss = -alpha / mean|Q| * Q(s, pi(s)) + MSE(pi(s), a)``). Transitions are
(s_t, a_t, r_t, s_t+1) within an episode; the last step of each episode has no stored next
state and is dropped (walker-walk never terminates, so nothing is ever a terminal).

Every ``--eval-every`` gradient steps (and at ``--early-evals`` halvings of the first interval)
the deterministic actor (actions clipped to the bounds) runs ``--eval-episodes`` walker-walk
episodes in parallel through ``sim.evaluation.evaluate`` (reset seeds
``controllers.session.EVALUATION_SEED_BASE + i``, never used for data); the score is the
normalised score ``100 * (R - random) / (expert - random)``. ``OUT/results.json`` is rewritten
after every evaluation; at the end ``OUT/representation_curves.png`` and the ``representation``
section of docs/benchmarks.md are written (``--no-write`` keeps the docs untouched,
``--report-only`` rewrites plot and docs from ``OUT/results.json``).

Quick budget (measured: 8.2 minutes on one thread of the 2-core dev VM, AMD EPYC; the score
curves are in docs/benchmarks.md):

  python -m mtm_robot.report.representation --steps 20000 --eval-every 2000 --eval-episodes 5 \\
      --seeds 0 --out runs/representation-quick

Full budget (3 seeds, 100k steps, 10 episodes per evaluation; estimated about 2 hours on one
thread at the quick run's 11-13 ms per gradient step):

  python -m mtm_robot.report.representation --steps 100000 --eval-every 5000 --eval-episodes 10 \\
      --seeds 0 1 2 --out runs/representation
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from controllers.session import EVALUATION_SEED_BASE
from mtm_robot.data.episodes import Episode, load_episodes
from mtm_robot.report.page import FIGURES, cell, hardware, write_section
from mtm_robot.report.studies import DATA_ROOT
from mtm_robot.training.checkpoint import DEFAULT_CHECKPOINT, Checkpoint, load_checkpoint
from sim.evaluation import evaluate as evaluate_policy

TASK = "walker-walk"
ARMS = ("raw", "mtm-frozen")
REACH_FRACTIONS = (0.5, 0.8, 0.9)  # "steps to reach X% of raw TD3+BC's final score"
GOAL_FRACTION = 0.9  # the speed-up verdict is taken at this fraction
BUDGETS: dict[str, list[str]] = {
    "quick": shlex.split("--steps 20000 --eval-every 2000 --eval-episodes 5 --seeds 0"),
    "full": shlex.split("--steps 100000 --eval-every 5000 --eval-episodes 10 --seeds 0 1 2"),
}

#: Features of a batch of raw observations: (N, 24) float array -> (N, k) float32 tensor.
FeatureFn = Callable[[np.ndarray], Tensor]


@dataclass
class TD3BCConfig:
    """TD3+BC hyperparameters (Fujimoto & Gu 2021, their defaults)."""

    hidden: int = 256  # width of both hidden layers of actor and critics
    lr: float = 3e-4  # Adam, actor and critics
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 0.005  # Polyak rate of both target networks
    policy_noise: float = 0.2  # target policy smoothing std (action units)
    noise_clip: float = 0.5
    policy_delay: int = 2  # actor and target updates every this many critic updates
    alpha: float = 2.5  # lambda = alpha / mean|Q|


# -- data ---------------------------------------------------------------------------------------
@dataclass
class Transitions:
    """All transitions of a store, as indices into one array of states (features computed once)."""

    states: np.ndarray  # (N, ds) every stored state, episodes concatenated
    actions: np.ndarray  # (n, da) a_t
    rewards: np.ndarray  # (n,) r_t
    index: np.ndarray  # (n,) row of s_t in ``states``; s_t+1 is row index + 1


def transitions_from_episodes(episodes: list[Episode]) -> Transitions:
    """(s_t, a_t, r_t, s_t+1) within each episode; the last step (no next state) is dropped."""
    states, actions, rewards, index = [], [], [], []
    offset = 0
    for episode in episodes:
        if episode.actions is None or episode.rewards is None:
            raise SystemExit("TD3+BC needs actions and rewards; an episode lacks them")
        T = len(episode)
        states.append(episode.states)
        actions.append(episode.actions[: T - 1])
        rewards.append(episode.rewards[: T - 1])
        index.append(offset + np.arange(T - 1))
        offset += T
    return Transitions(
        np.concatenate(states).astype(np.float32),
        np.concatenate(actions).astype(np.float32),
        np.concatenate(rewards).astype(np.float32),
        np.concatenate(index),
    )


def raw_features(states: np.ndarray) -> FeatureFn:
    """Z-scoring with the statistics of ``states`` (TD3+BC's: std + 1e-3)."""
    mean = states.mean(axis=0).astype(np.float32)
    std = (states.std(axis=0) + 1e-3).astype(np.float32)
    return lambda x: torch.from_numpy(((np.asarray(x, np.float32) - mean) / std).astype(np.float32))


def mtm_features(checkpoint: Checkpoint, chunk: int = 4096) -> FeatureFn:
    """Frozen ``MTM.represent`` of states normalised with the checkpoint's normaliser."""
    model, normalizer = checkpoint.model.eval(), checkpoint.normalizer

    def features(x: np.ndarray) -> Tensor:
        z = torch.from_numpy(normalizer.normalize("states", np.asarray(x, np.float32)))
        with torch.no_grad():
            return torch.cat([model.represent(part) for part in z.split(chunk)])  # (N, d)

    return features


# -- agent --------------------------------------------------------------------------------------
def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, outputs),
    )


class TwinCritic(nn.Module):
    def __init__(self, feature_dim: int, action_dim: int, hidden: int) -> None:
        super().__init__()
        self.q1 = _mlp(feature_dim + action_dim, hidden, 1)
        self.q2 = _mlp(feature_dim + action_dim, hidden, 1)

    def forward(self, features: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        x = torch.cat([features, actions], dim=1)  # (B, k + da)
        return self.q1(x)[:, 0], self.q2(x)[:, 0]  # (B,), (B,)


class TD3BC:
    """Actor, twin critics, their targets and optimisers; one :meth:`update` per gradient step."""

    def __init__(self, feature_dim: int, action_dim: int, config: TD3BCConfig, seed: int) -> None:
        self.config = config
        with torch.random.fork_rng():  # seeded initialisation without touching the global RNG
            torch.manual_seed(seed)
            self.actor = nn.Sequential(_mlp(feature_dim, config.hidden, action_dim), nn.Tanh())
            self.critic = TwinCritic(feature_dim, action_dim, config.hidden)
        self.actor_target = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=config.lr)
        self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=config.lr)
        self.noise = torch.Generator().manual_seed(seed)
        self.updates = 0

    def update(self, s: Tensor, a: Tensor, r: Tensor, s_next: Tensor) -> dict[str, float]:
        """One critic step (and every ``policy_delay`` an actor and target step). a in [-1, 1]."""
        c = self.config
        with torch.no_grad():
            noise = torch.randn(a.shape, generator=self.noise) * c.policy_noise
            next_a = self.actor_target(s_next) + noise.clamp(-c.noise_clip, c.noise_clip)
            q1_next, q2_next = self.critic_target(s_next, next_a.clamp(-1.0, 1.0))
            target = r + c.discount * torch.minimum(q1_next, q2_next)  # (B,)
        q1, q2 = self.critic(s, a)
        critic_loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        self.critic_optim.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optim.step()
        self.updates += 1
        losses = {"critic": critic_loss.item()}
        if self.updates % c.policy_delay == 0:
            pi = self.actor(s)  # (B, da)
            q = self.critic.q1(torch.cat([s, pi], dim=1))[:, 0]
            lam = c.alpha / q.abs().mean().detach()
            bc = F.mse_loss(pi, a)
            actor_loss = -lam * q.mean() + bc
            self.actor_optim.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_optim.step()
            for net, target_net in (
                (self.actor, self.actor_target),
                (self.critic, self.critic_target),
            ):
                with torch.no_grad():
                    for p, tp in zip(net.parameters(), target_net.parameters()):
                        tp.lerp_(p, c.tau)
            losses.update(actor=actor_loss.item(), bc=bc.item())
        return losses

    def act(self, features: Tensor) -> np.ndarray:
        with torch.no_grad():
            return self.actor(features).numpy()


# -- evaluation ---------------------------------------------------------------------------------
@dataclass
class ActorPolicy:
    """The deterministic actor on an arm's features, as a ``sim.evaluation.BatchPolicy``."""

    agent: TD3BC
    features: FeatureFn
    history: int = 0  # TD3+BC is Markov: no history

    def act(
        self,
        episodes: Sequence[int],
        step: int,
        states: np.ndarray,  # (B, ds) raw observations
        history_states: Sequence[np.ndarray],
        history_actions: Sequence[np.ndarray],
    ) -> np.ndarray:  # (B, da)
        return self.agent.act(self.features(states))


def evaluate(policy: ActorPolicy, episodes: int, max_episode_steps: int = 0) -> np.ndarray:
    """Normalised scores of ``episodes`` walker-walk episodes stepped in parallel (episode i
    resets with ``EVALUATION_SEED_BASE + i``; actions clipped to the bounds)."""
    seeds = [EVALUATION_SEED_BASE + i for i in range(episodes)]
    return evaluate_policy(policy, TASK, seeds, max_episode_steps).scores


# -- one arm, one seed --------------------------------------------------------------------------
@dataclass
class Evaluation:
    step: int  # gradient steps so far
    score: float  # mean normalised score over the evaluation episodes
    losses: dict[str, float]  # of the last update
    eval_s: float  # wall time of the evaluation


def evaluation_steps(steps: int, every: int, early: int) -> set[int]:
    """Every ``every`` steps and the last step, plus ``early`` halvings of the first interval
    (``every / 2, every / 4, ...``: the speed-up question is about early learning)."""
    schedule = {*range(every, steps + 1, every), steps}
    schedule |= {every >> k for k in range(1, early + 1) if every >> k >= 1}
    return {s for s in schedule if s <= steps}


def train_arm(
    data: Transitions, features: FeatureFn, args: argparse.Namespace, seed: int
) -> Iterator[Evaluation]:
    """Train TD3+BC on ``features`` of the data, yielding every evaluation as it happens."""
    config = TD3BCConfig(batch_size=args.batch_size)
    table = features(data.states)  # (N, k) computed once, frozen
    actions = torch.from_numpy(data.actions)
    rewards = torch.from_numpy(data.rewards)
    index = torch.from_numpy(data.index)
    agent = TD3BC(table.shape[1], actions.shape[1], config, seed)
    batches = np.random.default_rng(seed)
    schedule = evaluation_steps(args.steps, args.eval_every, args.early_evals)
    for step in range(1, args.steps + 1):
        rows = torch.from_numpy(batches.integers(0, len(index), config.batch_size))
        i = index[rows]
        losses = agent.update(table[i], actions[rows], rewards[rows], table[i + 1])
        if step in schedule:
            start = time.perf_counter()
            policy = ActorPolicy(agent, features)
            scores = evaluate(policy, args.eval_episodes, args.max_episode_steps)
            yield Evaluation(step, float(scores.mean()), losses, time.perf_counter() - start)


# -- command line -------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data",
        type=Path,
        default=DATA_ROOT / "medium",
        help="walker-walk episode store with actions and rewards (default: MTM_DATA_ROOT or "
        "data/walker, then medium/)",
    )
    p.add_argument(
        "--checkpoint",
        default=str(DEFAULT_CHECKPOINT),
        help="MTM checkpoint for the mtm-frozen arm (default: the shipped one)",
    )
    p.add_argument("--steps", type=int, default=20000, help="gradient steps per arm and seed")
    p.add_argument("--eval-every", type=int, default=2000, help="gradient steps between evals")
    p.add_argument("--eval-episodes", type=int, default=5, help="episodes per evaluation")
    p.add_argument(
        "--early-evals",
        type=int,
        default=3,
        help="extra evaluations at eval-every/2, /4, ... (this many halvings)",
    )
    p.add_argument(
        "--max-episode-steps",
        type=int,
        default=0,
        help="cut evaluation episodes at this many steps (0: full; smoke tests)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    p.add_argument("--batch-size", type=int, default=TD3BCConfig.batch_size)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("runs/representation"))
    p.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite plot and docs section from OUT/results.json, no training",
    )
    args = p.parse_args(argv)
    if args.steps < 1 or args.eval_every < 1 or args.eval_episodes < 1:
        p.error("--steps, --eval-every and --eval-episodes must be >= 1")
    return args


def run(budget: str = "quick", extra: list[str] | None = None) -> int:
    """Entry point for an orchestrator: ``run("quick", ["--out", "..."])``."""
    return main([*BUDGETS[budget], *(extra or [])])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("MUJOCO_GL", "egl")
    argv_run = ["-m", "mtm_robot.report.representation"]
    argv_run += sys.argv[1:] if argv is None else argv
    results_path = args.out / "results.json"
    if args.report_only:
        finish(json.loads(results_path.read_text()), args.out, write=not args.no_write)
        return 0
    torch.set_num_threads(args.threads)
    data = transitions_from_episodes(load_episodes(args.data))
    checkpoint = load_checkpoint(args.checkpoint)
    feature_fns: dict[str, FeatureFn] = {
        "raw": raw_features(data.states),
        "mtm-frozen": mtm_features(checkpoint),
    }
    saved: dict[str, Any] = {
        "argv": argv_run,
        "data": str(args.data),
        "transitions": len(data.index),
        "checkpoint": str(args.checkpoint),
        "model_id": checkpoint.model_id,
        "config": asdict(TD3BCConfig(batch_size=args.batch_size)),
        "steps": args.steps,
        "eval_episodes": args.eval_episodes,
        "max_episode_steps": args.max_episode_steps,
        "threads": args.threads,
        "hardware": hardware(),
        "arms": {arm: {} for arm in ARMS},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for arm in ARMS:
            row: dict[str, Any] = {"curve": [], "wall_s": 0.0, "eval_s": 0.0}
            saved["arms"][arm][str(seed)] = row
            start = last = time.perf_counter()
            for ev in train_arm(data, feature_fns[arm], args, seed):
                now = time.perf_counter()
                row["curve"].append([ev.step, ev.score])
                row["wall_s"] = now - start
                row["eval_s"] += ev.eval_s
                results_path.write_text(json.dumps(saved, indent=1))
                losses = " ".join(f"{k} {v:.3g}" for k, v in ev.losses.items())
                print(
                    f"{arm} seed {seed} step {ev.step}: score {ev.score:.1f} "
                    f"({now - last:.0f} s, eval {ev.eval_s:.1f} s; {losses})",
                    flush=True,
                )
                last = now
    finish(saved, args.out, write=not args.no_write)
    return 0


# -- reporting ----------------------------------------------------------------------------------
def curves(saved: dict[str, Any], arm: str) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation steps (E,) and scores (seeds, E) of an arm (seeds cut to a common length)."""
    runs = [np.asarray(r["curve"], dtype=float) for r in saved["arms"][arm].values() if r["curve"]]
    if not runs:
        return np.zeros(0), np.zeros((0, 0))
    n = min(len(r) for r in runs)
    return runs[0][:n, 0], np.stack([r[:n, 1] for r in runs])


def final_score(saved: dict[str, Any], arm: str = "raw") -> float:
    """An arm's final score: mean over seeds of its last (up to) 3 evaluations."""
    _, scores = curves(saved, arm)
    return float(scores[:, -3:].mean())


def steps_to_reach(steps: np.ndarray, scores: np.ndarray, threshold: float) -> int | None:
    """First evaluation step whose seed-mean score is >= threshold (None: never)."""
    hits = np.nonzero(scores.mean(axis=0) >= threshold)[0]
    return int(steps[hits[0]]) if len(hits) else None


def plot(saved: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for arm, color in zip(ARMS, ("tab:gray", "tab:blue")):
        steps, scores = curves(saved, arm)
        if not len(steps):
            continue
        mean, std = scores.mean(axis=0), scores.std(axis=0)
        ax.plot(
            steps,
            mean,
            "o-",
            color=color,
            label=f"{arm} ({len(scores)} seed{'s' if len(scores) > 1 else ''})",
        )
        ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.2)
    if curves(saved, "raw")[1].size:
        ax.axhline(
            final_score(saved),
            color="k",
            lw=0.8,
            ls="--",
            label="raw final (mean of last 3 evaluations)",
        )
    ax.set(
        xlabel="gradient steps",
        ylabel="normalised score (100 = expert)",
        title=f"TD3+BC on {Path(saved['data']).name}: raw vs frozen MTM features",
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def report(saved: dict[str, Any]) -> str:
    """The docs section: score table, steps to reach fractions of raw's final score, verdict."""
    steps, _ = curves(saved, "raw")
    # every early evaluation (the speed-up lives there), then a few points of the budget
    early = [s for s in steps if s < saved["steps"] / 10]
    wanted = [*early, *(f * saved["steps"] for f in (0.1, 0.25, 0.5, 1.0))] if len(steps) else []
    shown = sorted({int(steps[np.abs(steps - w).argmin()]) for w in wanted})
    header = "| arm | " + " | ".join(f"{s} steps" for s in shown) + " | wall s / seed |"
    rows = [header, "|" + " --- |" * (len(shown) + 2)]
    for arm in ARMS:
        arm_steps, scores = curves(saved, arm)
        cells = [cell(scores[:, list(arm_steps).index(s)]) for s in shown]
        walls = np.mean([r["wall_s"] for r in saved["arms"][arm].values()])
        rows.append(f"| {arm} | " + " | ".join(cells) + f" | {walls:.0f} |")
    final = final_score(saved)
    reach_rows = [
        "| arm | " + " | ".join(f"{f:.0%} ({f * final:.1f})" for f in REACH_FRACTIONS) + " |",
        "|" + " --- |" * (len(REACH_FRACTIONS) + 1),
    ]
    reached: dict[str, int | None] = {}
    for arm in ARMS:
        arm_steps, scores = curves(saved, arm)
        cells = []
        for f in REACH_FRACTIONS:
            hit = steps_to_reach(arm_steps, scores, f * final)
            cells.append("not reached" if hit is None else str(hit))
            if f == GOAL_FRACTION:
                reached[arm] = hit
        reach_rows.append(f"| {arm} | " + " | ".join(cells) + " |")
    raw_hit, mtm_hit = reached["raw"], reached["mtm-frozen"]
    if final <= 0:
        verdict = "**undefined** (raw's final score is not positive)"
    elif mtm_hit is not None and (raw_hit is None or mtm_hit < raw_hit):
        ratio = f"{raw_hit / mtm_hit:.1f}x fewer steps" if raw_hit else "raw never got there"
        verdict = f"**met** ({ratio})"
    elif mtm_hit is not None and mtm_hit == raw_hit:
        verdict = "**not met** (both arms reach it at the same evaluation)"
    else:
        verdict = (
            "**not met** (the MTM arm is slower)"
            if mtm_hit
            else "**not met** (the MTM arm never reaches it)"
        )
    seeds = sorted({int(s) for arm in ARMS for s in saved["arms"][arm]})
    seed_list = ", ".join(map(str, seeds))
    finals = ", ".join(f"{arm} {final_score(saved, arm):.1f}" for arm in ARMS)
    caveat = (
        "One training seed only: no spread over seeds, treat the verdict as indicative."
        if len(seeds) == 1
        else f"{len(seeds)} training seeds."
    )
    config = ", ".join(f"{k} {v}" for k, v in saved["config"].items())
    cut = f", cut at {saved['max_episode_steps']} steps" if saved["max_episode_steps"] else ""
    command = "python " + " ".join(a for a in saved["argv"] if a != "--no-write")
    return f"""## Representation learning: TD3+BC on raw vs frozen MTM features (issue 8)

TD3+BC (Fujimoto & Gu 2021) on `{saved["data"]}` ({saved["transitions"]} transitions), two
arms differing only in the actor's and critics' input: `raw` = the 24-d observation z-scored
with dataset statistics; `mtm-frozen` = `MTM.represent` (encoder output of a length-1
state-only segment, reference 6) of the checkpoint `{saved["model_id"]}`, frozen.
Same seed, batches, target noise and {saved["steps"]} gradient steps per arm; training seeds
{seed_list}. Evaluation: {saved["eval_episodes"]} walker-walk episodes per point{cut}
(reset seeds {EVALUATION_SEED_BASE}..), deterministic actor; normalised score =
100 x (R - random) / (expert - random). Cells are mean ± std over seeds (std 0 with one
seed) of the per-evaluation mean score. Curves: below (and in the run directory).
Hyperparameters: {config}.

{chr(10).join(rows)}

Gradient steps to reach a fraction of raw TD3+BC's final score ({final:.1f} = mean of raw's
last 3 evaluations over seeds; resolution = the evaluation schedule):

{chr(10).join(reach_rows)}

Goal "MTM representations speed up the actor-critic" (the MTM arm reaches
{GOAL_FRACTION:.0%} of raw's final score in fewer steps): {verdict}. {caveat}
Final scores (mean of the last 3 evaluations): {finals}.
Wall time per seed includes evaluation; {saved["threads"]} torch thread(s), shared machine.
Hardware: {saved["hardware"]}.

Command: `{command}`
"""


def finish(saved: dict[str, Any], out: Path, write: bool) -> None:
    plot(saved, out / "representation_curves.png")
    md = report(saved)
    print(md)
    if write:
        FIGURES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "representation_curves.png", FIGURES / "representation_curves.png")
        picture = "![representation curves](figures/representation_curves.png)\n\nCommand:"
        write_section("representation", md.replace("Command:", picture, 1))


if __name__ == "__main__":
    sys.exit(main())
