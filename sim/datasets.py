"""D4RL-style dataset recipes: which policy acts in each episode, and the rollout itself.

Recipes (per task, after Fu et al. 2020):

============== ===========================================================================
random         uniform-random actions in the action bounds
medium         the "medium" policy (about half the expert's return), sampled actions
expert         the expert policy, sampled actions
medium-expert  even episode indices medium, odd indices expert (half and half)
medium-replay  the training run's snapshots up to the medium one, episode ``i`` acting with
               snapshot ``i mod n`` (snapshot 0 = uniform random, like SAC's seed steps);
               stands in for D4RL's replay buffer, which cannot be replayed exactly
============== ===========================================================================

"Sampled" means actions drawn from the policy's squashed Gaussian (as D4RL's datasets were);
``deterministic=True`` uses the mean action instead.

Determinism: episode ``i`` of a collection with seed ``s`` resets the simulator with
``DATASET_SEED_BASE + s * 1_000_000 + i`` and draws its actions from
``numpy.random.default_rng([s, i])``, so the data depend on ``(task, recipe, seed, i)`` only,
never on the number of workers or the order they finish in.

Each episode is written through the project's episode store (``mtm_robot.data.episodes``) as
``episode_<i>.npz`` with states, actions (absent when dropped), rewards, physics states and
timestamps; ``states[t]`` is the observation in which ``actions[t]`` was taken and
``rewards[t]`` the reward received for it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mtm_robot.errors import MTMRobotError
from sim.env import SimEnv
from sim.experts.policy import ExpertPolicy
from sim.registry import make, resolve

logger = logging.getLogger(__name__)

RECIPES = ("random", "medium", "medium-replay", "medium-expert", "expert")
DATASET_SEED_BASE = 30_000_000

Actor = Callable[[np.ndarray, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class RolloutResult:
    """One simulated episode as plain arrays (``T`` control steps)."""

    states: np.ndarray  # (T, ds) float64
    actions: np.ndarray  # (T, da) float64
    rewards: np.ndarray  # (T,) float64
    physics: np.ndarray  # (T, dp) float64
    terminated: bool
    truncated: bool

    @property
    def episode_return(self) -> float:
        return float(self.rewards.sum())


def rollout(env: SimEnv, act: Actor, reset_seed: int, rng: np.random.Generator) -> RolloutResult:
    """Run one episode to termination or the time limit, recording the physics state per step."""
    obs, _ = env.reset(seed=reset_seed)
    n, ds, da = env.max_episode_steps, env.observation_dim, env.action_dim
    states = np.empty((n, ds))
    actions = np.empty((n, da))
    rewards = np.empty(n)
    physics = np.empty((n, env.physics_dim))
    terminated = truncated = False
    t = 0
    while not (terminated or truncated):
        states[t] = obs
        physics[t] = env.get_physics_state()
        action = act(obs, rng)
        actions[t] = action
        obs, rewards[t], terminated, truncated, _ = env.step(action)
        t += 1
    return RolloutResult(states[:t], actions[:t], rewards[:t], physics[:t], terminated, truncated)


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


@dataclass(frozen=True)
class PolicySource:
    """Where a recipe's policies come from (a folder laid out like ``sim/experts/<task>/``)."""

    policy_dir: Path
    expert_file: Path | None = None  # an expert from elsewhere (a stable-baselines3 .zip)

    def expert(self) -> Path:
        if self.expert_file is not None:
            return self._require(self.expert_file)
        return self._require(self.policy_dir / "expert.safetensors")

    def medium(self) -> Path:
        return self._require(self.policy_dir / "medium.safetensors")

    def replay(self) -> list[Path]:
        snapshots = sorted((self.policy_dir / "replay").glob("*.safetensors"))
        if not snapshots:
            raise MissingPolicyError(
                f"medium-replay needs training snapshots in {self.policy_dir / 'replay'}"
            )
        return snapshots

    @staticmethod
    def _require(path: Path) -> Path:
        if not path.exists():
            raise MissingPolicyError(f"policy file {path} not found (train and --ship one first)")
        return path


#: The policy files each recipe reads from a policy folder.
RECIPE_POLICIES = {
    "random": (),
    "medium": ("medium.safetensors",),
    "expert": ("expert.safetensors",),
    "medium-expert": ("medium.safetensors", "expert.safetensors"),
    "medium-replay": ("replay/*.safetensors",),
}


def available_recipes(task: str, policy_dir: Path | None = None) -> list[str]:
    """The recipes whose policy files ``policy_dir`` (default: the task's shipped folder)
    holds, in :data:`RECIPES` order (``random`` always)."""
    folder = Path(policy_dir) if policy_dir is not None else default_policy_dir(task)
    return [
        recipe
        for recipe in RECIPES
        if all(any(folder.glob(name)) for name in RECIPE_POLICIES[recipe])
    ]


class MissingPolicyError(MTMRobotError, FileNotFoundError):
    """A recipe needs a policy file that is not there."""


def require_policies(
    task: str, recipe: str, policy_dir: Path | None, expert_file: Path | None = None
) -> None:
    """Fail before collecting when ``recipe`` needs policy files ``policy_dir`` lacks; the
    message says which recipes need what and how to train and ship an expert.
    ``expert_file`` (``--sb3``) stands in for ``expert.safetensors``."""
    needed = RECIPE_POLICIES[recipe]
    if expert_file is not None:
        if "expert.safetensors" not in needed:
            raise MissingPolicyError(
                f"--sb3 gives the expert; recipe '{recipe}' uses none (use expert or medium-expert)"
            )
        if not Path(expert_file).is_file():
            raise MissingPolicyError(f"--sb3 {expert_file}: no such file")
        needed = tuple(n for n in needed if n != "expert.safetensors")
    if not needed:
        return
    folder = Path(policy_dir) if policy_dir is not None else default_policy_dir(task)
    missing = [name for name in needed if not any(folder.glob(name))]
    if not missing:
        return
    needs = "; ".join(f"{r}: {', '.join(f)}" for r, f in RECIPE_POLICIES.items() if f)
    if policy_dir is None:
        shipped = sorted(
            p.parent.name for p in default_policy_dir(task).parent.glob("*/expert.safetensors")
        )
        raise MissingPolicyError(
            f"task '{task}' ships no {', '.join(missing)} in {folder} (recipe '{recipe}' needs "
            f"it; {needs}). Train and ship one: python launch/train_expert.py --task {task} "
            f"--out runs/{task}-sac, then python launch/train_expert.py --ship runs/{task}-sac; "
            f"or use --recipe random, or --policy-dir DIR. Tasks with shipped policies: "
            f"{', '.join(shipped) or 'none'}"
        )
    raise MissingPolicyError(
        f"--policy-dir {folder} has no {', '.join(missing)} (recipe '{recipe}' needs it; "
        f"{needs}); write one with python launch/train_expert.py --ship RUN_DIR --ship-to {folder}"
    )


def _random_actor(env: SimEnv) -> Actor:
    low, high = env.action_low, env.action_high
    return lambda _obs, rng: rng.uniform(low, high)


def _policy_actor(policy: ExpertPolicy, deterministic: bool) -> Actor:
    if deterministic:
        return lambda obs, _rng: policy.act(obs)
    return lambda obs, rng: policy.act(obs, rng)


class RecipeActors:
    """Resolves (recipe, episode index) -> (actor, policy id), loading each policy once."""

    def __init__(
        self,
        env: SimEnv,
        recipe: str,
        source: PolicySource | None,
        deterministic: bool = False,
    ) -> None:
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
        if recipe != "random" and source is None:
            raise ValueError(f"recipe {recipe!r} needs a policy folder")
        self.env, self.recipe, self.deterministic = env, recipe, deterministic
        self._source = source
        self._cache: dict[Path, tuple[Actor, str]] = {}

    def _load(self, path: Path) -> tuple[Actor, str]:
        if path not in self._cache and path.suffix == ".zip":
            from sim.experts.sb3 import SB3Policy  # stable-baselines3: the sb3 extra

            sb3 = SB3Policy(path, self.env)
            act: Actor = (lambda obs, _rng: sb3.act(obs)) if self.deterministic else sb3.act
            self._cache[path] = (
                act,
                f"sb3-{sb3.algorithm.lower()}:{path.name}@{file_digest(path)}",
            )
        if path not in self._cache:
            policy = ExpertPolicy.load(path)
            if policy.meta.get("task") != self.env.task:
                raise ValueError(
                    f"{path} is a policy for {policy.meta.get('task')!r}, not {self.env.task!r}"
                )
            self._cache[path] = (
                _policy_actor(policy, self.deterministic),
                f"{path.name}@{file_digest(path)}",
            )
        return self._cache[path]

    def for_episode(self, index: int) -> tuple[Actor, str]:
        recipe, source = self.recipe, self._source
        if recipe == "random":
            return _random_actor(self.env), "uniform-random"
        assert source is not None
        if recipe == "expert" or (recipe == "medium-expert" and index % 2 == 1):
            return self._load(source.expert())
        if recipe in ("medium", "medium-expert"):
            return self._load(source.medium())
        # medium-replay: slot 0 is uniform random, then the snapshots in training order
        snapshots = source.replay()
        slot = index % (len(snapshots) + 1)
        if slot == 0:
            return _random_actor(self.env), "uniform-random"
        return self._load(snapshots[slot - 1])


@dataclass(frozen=True)
class CollectJob:
    """Everything a worker needs to collect some episodes of one dataset."""

    task: str
    recipe: str
    out_dir: str
    seed: int
    indices: tuple[int, ...]
    policy_dir: str | None
    drop_actions: bool = False
    deterministic: bool = False
    expert_file: str | None = None  # a stable-baselines3 .zip as the expert (--sb3)


def reset_seed(seed: int, index: int) -> int:
    """The simulator reset seed of episode ``index`` of a dataset with seed ``seed``.

    ``DATASET_SEED_BASE + seed * 1_000_000 + index`` while that fits a reset seed (below
    2**32, i.e. seeds up to about 4,264, and index below 1,000,000); past that, a hash of
    (base, seed, index) into [0, 2**32) (numpy's SeedSequence), so any non-negative seed works
    and is reproducible.
    """
    if seed < 0 or index < 0:
        raise ValueError(f"dataset seed and episode index must be >= 0, got {seed}, {index}")
    formula = DATASET_SEED_BASE + seed * 1_000_000 + index
    if index < 1_000_000 and formula < 2**32:
        return formula
    return int(np.random.SeedSequence([DATASET_SEED_BASE, seed, index]).generate_state(1)[0])


def collect_episodes(
    job: CollectJob, on_episode: Callable[[dict[str, Any]], None] | None = None
) -> list[dict[str, Any]]:
    """Collect and save ``job.indices``; returns one summary dict per episode."""
    from mtm_robot.data.episodes import Episode, episode_file, save_episode

    summaries = []
    source = (
        PolicySource(Path(job.policy_dir), Path(job.expert_file) if job.expert_file else None)
        if job.policy_dir
        else None
    )
    with make(job.task) as env:
        actors = RecipeActors(env, job.recipe, source, job.deterministic)
        for index in job.indices:
            act, policy_id = actors.for_episode(index)
            seed = reset_seed(job.seed, index)
            result = rollout(env, act, seed, np.random.default_rng([job.seed, index]))
            steps = len(result.rewards)
            meta = {
                "task": env.task,
                "source": "sim",
                "recipe": job.recipe,
                "policy_id": policy_id,
                "action_mode": "mean" if job.deterministic else "sample",
                "control_hz": env.control_hz,
                "action_low": [float(v) for v in env.action_low],
                "action_high": [float(v) for v in env.action_high],
                "seed": seed,
                "dataset_seed": job.seed,
                "episode_index": index,
                "terminated": result.terminated,
                "truncated": result.truncated,
                "return": result.episode_return,
                "observation_names": list(getattr(env, "observation_names", ())),
            }
            episode = Episode(
                states=result.states.astype(np.float32),
                actions=result.actions.astype(np.float32),
                rewards=result.rewards.astype(np.float32),
                physics=result.physics,
                time_s=np.arange(steps) / env.control_hz,
                meta=meta,
            )
            if job.drop_actions:
                episode = episode.without_actions()
            save_episode(episode_file(job.out_dir, index), episode)
            summary = {"index": index, "steps": steps, "return": result.episode_return,
                       "policy_id": policy_id}  # fmt: skip
            summaries.append(summary)
            if on_episode is not None:
                on_episode(summary)
    return summaries


def default_policy_dir(task: str) -> Path:
    """The package's shipped policy folder of a task (may not exist yet)."""
    return Path(__file__).resolve().parent / "experts" / resolve(task)
