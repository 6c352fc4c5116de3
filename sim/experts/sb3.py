"""A stable-baselines3 policy (``.zip``) as a data-generating expert, beside our own SAC.

``mtm-collect --recipe expert --sb3 PATH.zip`` (and ``medium-expert``, for its expert half)
acts with the SB3 model through the same ``act(obs, rng)`` as :class:`sim.experts.policy.
ExpertPolicy`.

Loading unpickles nothing: an SB3 ``.zip`` keeps its weights as torch tensors (read with
``weights_only=True``) and its settings as JSON, except for some objects stored as cloudpickle
(the policy class, the spaces, schedules, buffers). Every such entry is replaced before SB3
reads the file (SB3's ``custom_objects``): the policy class by the algorithm's ``MlpPolicy``,
the spaces by the task's, the rest by ``None`` or constants, which prediction never uses. The
algorithm is read from the JSON: ``policy_class.__module__`` (``sac``, ``td3``, or the
actor-critic ``common`` one) and, for actor-critic, ``clip_range`` present (PPO) or not (A2C).
A policy whose ``policy_kwargs`` hold pickled objects (a custom activation class) or a
``VecNormalize`` wrapper is not supported; state-vector ``MlpPolicy`` models are.

Needs the ``sb3`` extra (``pip install "mtm-robot[sb3]"``).
"""

from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from mtm_robot.errors import ConfigError
from sim.env import SimEnv

log = logging.getLogger(__name__)


def _algorithm(data: dict[str, Any], path: Path) -> str:
    policy = data.get("policy_class") or {}
    module = str(policy.get("__module__", "")) if isinstance(policy, dict) else ""
    if module.startswith("stable_baselines3.sac"):
        return "SAC"
    if module.startswith("stable_baselines3.td3"):
        return "TD3" if int(data.get("policy_delay", 2)) > 1 else "DDPG"
    if module == "stable_baselines3.common.policies":
        return "PPO" if "clip_range" in data else "A2C"
    raise ConfigError(
        f"{path}: cannot tell the SB3 algorithm (policy class module {module!r}); supported: "
        "PPO, A2C, SAC, TD3, DDPG with MlpPolicy"
    )


class SB3Policy:
    """``act(obs, rng)`` of a stable-baselines3 model, inside the task's action bounds."""

    def __init__(self, path: str | Path, env: SimEnv) -> None:
        try:
            import stable_baselines3 as sb3
            import torch
        except ImportError as exc:
            raise ConfigError(
                'an SB3 expert needs stable-baselines3: pip install "mtm-robot[sb3]"'
            ) from exc
        from gymnasium import spaces

        self.path = Path(path)
        try:
            with zipfile.ZipFile(self.path) as archive:
                data = json.loads(archive.read("data"))
        except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
            raise ConfigError(f"{self.path}: not a stable-baselines3 .zip ({exc})") from exc
        self.algorithm = _algorithm(data, self.path)
        cls = getattr(sb3, self.algorithm)
        obs_space = spaces.Box(-np.inf, np.inf, shape=(env.observation_dim,), dtype=np.float32)
        act_space = spaces.Box(
            env.action_low.astype(np.float32), env.action_high.astype(np.float32)
        )
        for name, space in (("observation_space", obs_space), ("action_space", act_space)):
            shape = json.loads(str(data.get(name, {}).get("_shape", "null")))
            if shape is not None and list(shape) != list(space.shape or ()):
                raise ConfigError(
                    f"{self.path}: the SB3 model's {name} has shape {shape}, task "
                    f"{env.task!r} has {list(space.shape or ())}: it was trained on another task"
                )
        # every entry SB3 stored pickled (":serialized:") is replaced before it reads the zip,
        # so nothing is unpickled
        custom: dict[str, Any] = {
            key: None for key, value in data.items() if isinstance(value, dict)
            and ":serialized:" in value
        }  # fmt: skip
        custom.update(
            policy_class=cls.policy_aliases["MlpPolicy"],
            observation_space=obs_space,
            action_space=act_space,
            lr_schedule=lambda _progress: 0.0,
        )
        for key in ("clip_range", "clip_range_vf"):
            if key in custom:
                custom[key] = lambda _progress: 0.0
        if "train_freq" in custom:  # off-policy algorithms check it is a count
            custom["train_freq"] = 1
        try:
            self.model = cls.load(self.path, device="cpu", custom_objects=custom)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ConfigError(f"{self.path}: stable-baselines3 could not load it ({exc})") from exc
        self._torch = torch
        self.action_low, self.action_high = env.action_low, env.action_high
        self.meta = {"algorithm": self.algorithm, "num_timesteps": data.get("num_timesteps")}
        log.info("%s: SB3 %s expert for %s", self.path, self.algorithm, env.task)

    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """The deterministic action if ``rng`` is None, else a sample of the policy seeded from
        ``rng`` (so a collection is reproducible)."""
        observation = np.asarray(obs, dtype=np.float32)
        if rng is not None:
            self._torch.manual_seed(int(rng.integers(0, 2**63 - 1)))
        action, _ = self.model.predict(observation, deterministic=rng is None)
        action = np.asarray(action, dtype=np.float64).reshape(self.action_low.shape)
        return np.clip(action, self.action_low, self.action_high)  # SB3 clips to its space too
