from __future__ import annotations

import numpy as np
import pytest

from mtm_robot.data.episodes import Episode
from mtm_robot.data.segments import DataConfig, build_dataset, returns_to_go
from mtm_robot.errors import DataError
from tests.synthetic import linear_episodes


def test_average_returns_exclude_current_reward_and_use_nominal_horizon():
    r = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(returns_to_go(r, "average", horizon=5), [5 / 5, 3 / 4, 0 / 3])
    np.testing.assert_allclose(
        returns_to_go(r, "discounted", discount=0.5), [1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3]
    )
    with pytest.raises(DataError, match="horizon"):
        returns_to_go(r, "average", horizon=2)


def test_windows_lie_inside_episodes_and_split_is_by_episode():
    episodes = linear_episodes(20, length=10)
    data = build_dataset(episodes, DataConfig(segment_length=4, validation_fraction=0.2))
    assert data.report.train_episodes == 16
    assert data.report.validation_episodes == 4
    assert data.report.train_windows == 16 * 7
    batch = data.groups["labelled"].sample(np.random.default_rng(0), 32)
    assert batch["states"].shape == (32, 4, 4)
    # normalised windows are consecutive steps of one episode: s_{t+1} = A s_t + B a_t holds
    raw = {n: data.normalizer.denormalize(n, v) for n, v in batch.items()}
    from tests.synthetic import system

    A, B, _ = system(0)
    pred = raw["states"][:, :-1] @ A.T + raw["actions"][:, :-1] @ B.T
    np.testing.assert_allclose(pred, raw["states"][:, 1:], atol=1e-4)


def test_nonfinite_values_are_rejected_naming_episode_and_step():
    episodes = linear_episodes(4, length=10)
    episodes[2].states[6, 1] = np.nan
    episodes[2].meta["path"] = "store/episode_000002.npz"
    with pytest.raises(DataError, match=r"episode_000002.npz: non-finite states at step 6"):
        build_dataset(episodes, DataConfig())
    data = build_dataset(episodes, DataConfig(drop_nonfinite=True, validation_fraction=0.0))
    assert data.report.dropped_nonfinite == 1
    assert data.report.train_episodes == 3


def test_short_episodes_are_skipped_and_counted():
    episodes = linear_episodes(5, length=10)
    episodes.append(Episode(np.zeros((3, 4)), np.zeros((3, 2)), np.zeros(3)))
    data = build_dataset(episodes, DataConfig(segment_length=4, validation_fraction=0.0))
    assert data.report.skipped_short == 1
    assert data.report.train_episodes == 5


def test_normaliser_is_fitted_on_training_episodes_only():
    episodes = linear_episodes(10, length=10)
    for e in episodes:
        e.meta["marker"] = True
    cfg = DataConfig(validation_fraction=0.5, split_seed=1)
    data = build_dataset(episodes, cfg)
    from mtm_robot.data.segments import split_episodes

    train, _ = split_episodes(episodes, 0.5, 1)
    mean = np.concatenate([e.states for e in train]).mean(axis=0)
    np.testing.assert_allclose(data.normalizer.mean["states"], mean, rtol=1e-5)


def test_action_free_episodes_form_their_own_group():
    data = build_dataset(
        linear_episodes(10, length=10, action_free=6),
        DataConfig(validation_fraction=0.0, labelled_fraction=0.25),
    )
    assert set(data.groups) == {"labelled", "action_free"}
    assert "actions" not in data.groups["action_free"].flat
    rng = np.random.default_rng(0)
    picks = [data.choose_group(rng) for _ in range(2000)]
    assert picks.count("labelled") / 2000 == pytest.approx(0.25, abs=0.04)
    with pytest.raises(DataError, match="labelled"):
        build_dataset(linear_episodes(3, length=10, action_free=3), DataConfig())
