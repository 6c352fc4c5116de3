"""From episodes to training batches: returns-to-go, validation, splits, segment windows.

Every window of length L that lies fully inside an episode is one item (reference 1.1).
Episodes are grouped by which modalities they carry (e.g. labelled vs action-free); a batch
is drawn from one group, so one mask serves the whole batch and the loss covers only the
modalities that group has (reference 5.3).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mtm_robot.config import at_least, positive
from mtm_robot.data.episodes import Episode
from mtm_robot.data.normalize import Normalizer
from mtm_robot.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """How episodes become segments."""

    segment_length: int = 4
    modalities: list[str] = field(default_factory=lambda: ["states", "actions", "returns"])
    returns: str = "average"  # "average" (reference 1.3) or "discounted"
    discount: float = 0.99  # used when returns == "discounted"
    return_horizon: int = 0  # nominal horizon H of the averaged form; 0 = longest episode
    validation_fraction: float = 0.05
    split_seed: int = 0
    drop_nonfinite: bool = False  # drop episodes with NaN/inf instead of failing
    labelled_fraction: float = 0.5  # share of batches drawn from fully labelled episodes
    min_std: float = 1e-2

    def __post_init__(self) -> None:
        if self.returns not in ("average", "discounted"):
            raise ConfigError(
                f"data.returns must be 'average' or 'discounted', got '{self.returns}'"
            )
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ConfigError(
                f"data.validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        if not 0.0 < self.labelled_fraction <= 1.0:
            raise ConfigError(
                f"data.labelled_fraction must be in (0, 1], got {self.labelled_fraction}"
            )
        known = {"states", "actions", "returns", "rewards"}
        for name in self.modalities:
            if name not in known:
                raise ConfigError(f"data.modalities: unknown '{name}'; known: {sorted(known)}")
        if "states" not in self.modalities:
            raise ConfigError("data.modalities must include 'states'")
        at_least(1, segment_length=self.segment_length)
        at_least(0, return_horizon=self.return_horizon, split_seed=self.split_seed)
        positive(min_std=self.min_std)
        if not 0.0 < self.discount <= 1.0:
            raise ConfigError(f"data.discount must be in (0, 1], got {self.discount}")


def returns_to_go(
    rewards: np.ndarray, mode: str = "average", horizon: int = 1000, discount: float = 0.99
) -> np.ndarray:
    """Returns-to-go (T,) from rewards (T,).

    ``average`` (reference 1.3): ``V_t = sum_{t' > t} r_t' / (H - t)``, the average future
    reward per remaining step of a nominal horizon H (r_t itself excluded).
    ``discounted``: ``G_t = sum_{t' >= t} discount^(t' - t) r_t'``.
    """
    r = np.asarray(rewards, dtype=np.float64).reshape(-1)
    T = len(r)
    if mode == "average":
        if horizon < T:
            raise DataError(f"return horizon {horizon} is shorter than an episode of {T} steps")
        future = np.concatenate([np.cumsum(r[::-1])[::-1][1:], [0.0]])  # sum_{t'>t}
        return (future / (horizon - np.arange(T))).astype(np.float32)
    if mode == "discounted":
        out = np.zeros(T)
        running = 0.0
        for t in range(T - 1, -1, -1):
            running = r[t] + discount * running
            out[t] = running
        return out.astype(np.float32)
    raise ConfigError(f"unknown returns mode '{mode}'")


@dataclass
class DataReport:
    """What happened to the input episodes (printed by the trainer, stored in checkpoints)."""

    episodes_in: int = 0
    skipped_short: int = 0
    dropped_nonfinite: int = 0
    train_episodes: int = 0
    validation_episodes: int = 0
    train_windows: int = 0
    action_free_episodes: int = 0


def check_finite(episodes: Sequence[Episode], drop: bool, report: DataReport) -> list[Episode]:
    """Reject (or with ``drop`` remove and count) episodes holding NaN/inf, naming the step."""
    kept = []
    for index, episode in enumerate(episodes):
        bad = None
        for name in ("states", "actions", "rewards"):
            value = getattr(episode, name)
            if value is None:
                continue
            finite = np.isfinite(value).reshape(len(value), -1).all(axis=1)
            if not finite.all():
                bad = (name, int(np.argmin(finite)))
                break
        if bad is None:
            kept.append(episode)
        elif drop:
            report.dropped_nonfinite += 1
        else:
            source = episode.meta.get("path", f"episode #{index}")
            raise DataError(
                f"{source}: non-finite {bad[0]} at step {bad[1]} "
                "(pass --set data.drop_nonfinite=true to drop such episodes)"
            )
    return kept


def split_episodes(
    episodes: Sequence[Episode], validation_fraction: float, seed: int
) -> tuple[list[Episode], list[Episode]]:
    """Split by whole episodes, in a seeded random order."""
    order = np.random.default_rng(seed).permutation(len(episodes))
    n_val = round(validation_fraction * len(episodes))
    if validation_fraction > 0 and len(episodes) > 1:
        n_val = max(n_val, 1)
    val = [episodes[i] for i in order[:n_val]]
    train = [episodes[i] for i in order[n_val:]]
    return train, val


class SegmentGroup:
    """Windows of episodes that carry the same modalities, stored as flat normalised arrays."""

    def __init__(self, arrays: dict[str, list[np.ndarray]], segment_length: int) -> None:
        self.names = list(arrays)
        self.L = segment_length
        lengths = np.array([len(a) for a in arrays["states"]])
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.flat = {n: np.concatenate(v).astype(np.float32) for n, v in arrays.items()}
        starts = [o + np.arange(n - segment_length + 1) for o, n in zip(offsets, lengths)]
        self.starts = np.concatenate(starts).astype(np.int64)

    def __len__(self) -> int:
        return len(self.starts)

    def gather(self, starts: np.ndarray) -> dict[str, np.ndarray]:
        index = starts[:, None] + np.arange(self.L)[None, :]  # (B, L)
        return {n: v[index] for n, v in self.flat.items()}  # name -> (B, L, k)

    def sample(self, rng: np.random.Generator, batch_size: int) -> dict[str, np.ndarray]:
        return self.gather(self.starts[rng.integers(0, len(self.starts), batch_size)])


@dataclass
class SegmentDataset:
    """Training and validation segments, the fitted normaliser, and dataset statistics."""

    groups: dict[str, SegmentGroup]  # "labelled" and/or "action_free" (normalised arrays)
    validation: dict[str, np.ndarray]  # raw (unnormalised) validation windows (N, L, k)
    normalizer: Normalizer
    dims: dict[str, int]
    stats: dict[str, float]  # return min/max, mean squared deltas (ID/FD error normalisers)
    report: DataReport
    labelled_fraction: float

    def choose_group(self, rng: np.random.Generator) -> str:
        """``labelled`` with probability ``labelled_fraction`` when action-free data exists."""
        if len(self.groups) == 1:
            return next(iter(self.groups))
        return "labelled" if rng.random() < self.labelled_fraction else "action_free"


def _episode_arrays(episode: Episode, config: DataConfig, horizon: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {"states": episode.states}
    if "actions" in config.modalities and episode.actions is not None:
        out["actions"] = episode.actions
    if episode.rewards is not None:
        if "returns" in config.modalities:
            out["returns"] = returns_to_go(
                episode.rewards, config.returns, horizon, config.discount
            )[:, None]
        if "rewards" in config.modalities:
            out["rewards"] = episode.rewards[:, None]
    return out


def check_same_dims(episodes: Sequence[Episode]) -> None:
    """Every episode has the same states (and actions) dim; the error names an example file
    of each dim (``meta["path"]``, set by the importers)."""
    for name in ("states", "actions"):
        by_dim: dict[int, list[Episode]] = {}
        for episode in episodes:
            array = getattr(episode, name)
            if array is not None:
                by_dim.setdefault(int(array.shape[1]), []).append(episode)
        if len(by_dim) > 1:
            groups = sorted(by_dim.items(), key=lambda item: -len(item[1]))
            found = " vs ".join(
                f"{dim} ({len(group)} episodes, e.g. {group[0].meta.get('path', 'unnamed')})"
                for dim, group in groups
            )
            raise DataError(
                f"the episodes disagree on the {name} dim: {found}; train on the data of one "
                "task (one observation and action layout) at a time"
            )


def build_dataset(
    episodes: Sequence[Episode], config: DataConfig, normalizer: Normalizer | None = None
) -> SegmentDataset:
    """Validate, split, compute returns, fit the normaliser, and window the episodes.

    A given ``normalizer`` (finetuning a checkpoint) is used as it is instead of being fitted,
    so the served model's normalisation does not change.
    """
    L = config.segment_length
    check_same_dims(episodes)
    report = DataReport(episodes_in=len(episodes))
    usable = [e for e in episodes if len(e) >= L]
    report.skipped_short = len(episodes) - len(usable)
    if report.skipped_short:
        log.warning("skipped %d episodes shorter than segment_length %d", report.skipped_short, L)
    usable = check_finite(usable, config.drop_nonfinite, report)
    if not usable:
        raise DataError(
            f"no usable episodes (of {len(episodes)}; {report.skipped_short} shorter "
            f"than {L}, {report.dropped_nonfinite} non-finite)"
        )
    needs_rewards = {"returns", "rewards"} & set(config.modalities)
    if needs_rewards and any(e.rewards is None for e in usable):
        missing = sum(e.rewards is None for e in usable)
        raise DataError(
            f"{missing} episodes have no rewards but modalities {sorted(needs_rewards)}"
            " need them; drop those modalities with --set data.modalities=..."
        )
    horizon = config.return_horizon or max(len(e) for e in usable)
    train, val = split_episodes(usable, config.validation_fraction, config.split_seed)
    per_episode = [_episode_arrays(e, config, horizon) for e in train]
    labelled = [a for a in per_episode if set(a) == set(config.modalities)]
    action_free = [a for a in per_episode if "actions" not in a]
    if not labelled:
        raise DataError(
            "no training episode carries every modality "
            f"{config.modalities}: at least one labelled episode is needed"
        )
    report.train_episodes, report.validation_episodes = len(train), len(val)
    report.action_free_episodes = sum(e.actions is None for e in usable)
    fit = {n: np.concatenate([a[n] for a in per_episode if n in a]) for n in config.modalities}
    if normalizer is None:
        normalizer = Normalizer.fit(fit, config.min_std)
    for name, values in fit.items():
        if name not in normalizer.mean or normalizer.mean[name].shape != values.shape[1:]:
            raise DataError(
                f"'{name}' has dim {values.shape[1]} but the normaliser expects "
                f"{normalizer.mean.get(name, np.zeros(0)).shape}"
            )
    dims = {n: v.shape[1] for n, v in fit.items()}
    groups = {}
    for group_name, members in (("labelled", labelled), ("action_free", action_free)):
        if members:
            names = list(members[0])
            arrays = {n: [normalizer.normalize(n, a[n]) for a in members] for n in names}
            groups[group_name] = SegmentGroup(arrays, L)
    report.train_windows = sum(len(g) for g in groups.values())
    stats = _statistics(labelled, fit)
    val_labelled = [
        a
        for a in (_episode_arrays(e, config, horizon) for e in val)
        if set(a) == set(config.modalities)
    ]
    validation = (
        SegmentGroup({n: [a[n] for a in val_labelled] for n in config.modalities}, L)
        if val_labelled
        else groups["labelled"]
    )
    raw_val = (
        validation.gather(validation.starts)
        if val_labelled
        else {
            n: normalizer.denormalize(n, v) for n, v in validation.gather(validation.starts).items()
        }
    )
    return SegmentDataset(
        groups, raw_val, normalizer, dims, stats, report, config.labelled_fraction
    )


def _statistics(
    labelled: list[dict[str, np.ndarray]], fit: dict[str, np.ndarray]
) -> dict[str, float]:
    """Error normalisers of reference 5.5 and the return range for return targets."""
    stats: dict[str, float] = {}
    ds = [np.diff(a["states"], axis=0) for a in labelled if len(a["states"]) > 1]
    stats["state_delta_sq"] = float(np.mean(np.concatenate(ds) ** 2)) if ds else 1.0
    if "actions" in fit:
        da = [np.diff(a["actions"], axis=0) for a in labelled if len(a["actions"]) > 1]
        stats["action_delta_sq"] = float(np.mean(np.concatenate(da) ** 2)) if da else 1.0
        stats["action_var"] = float(np.mean(np.var(fit["actions"], axis=0)))
    if "returns" in fit:
        stats["return_min"] = float(fit["returns"].min())
        stats["return_max"] = float(fit["returns"].max())
    return stats
