"""Soft Actor-Critic (Haarnoja et al. 2018) for state-based tasks, in one file.

Standard SAC with twin Q critics, target critics updated by Polyak averaging, a tanh-squashed
Gaussian actor and automatic entropy tuning (target entropy ``-action_dim``). The twin critics
are one ensemble module (batched matmuls), which keeps an update at batch 256 on one CPU thread
cheap. The actor's log-std is squashed into ``[log_std_min, log_std_max]`` with a tanh as in
pytorch_sac; ``sim.experts.policy`` mirrors the actor in numpy for data collection.

Everything that training needs to resume (networks, optimiser moments, replay buffer) is
exposed as flat named arrays (``state_tensors``/``optimizer_arrays``) so checkpoints are
safetensors + npz, never pickle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class SACConfig:
    """SAC hyper-parameters (defaults: the usual state-based DMC settings)."""

    hidden_dim: int = 256
    """width of each hidden layer (actor and critics)."""
    hidden_layers: int = 2
    """hidden layers per network."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics."""
    alpha_lr: float = 3e-4
    """Adam learning rate of the log entropy temperature."""
    init_alpha: float = 0.1
    """initial entropy temperature."""
    gamma: float = 0.99
    """discount factor."""
    tau: float = 0.005
    """Polyak rate of the target critics."""
    batch_size: int = 256
    """transitions per update."""
    log_std_min: float = -5.0
    """lower bound of the actor's log standard deviation."""
    log_std_max: float = 2.0
    """upper bound of the actor's log standard deviation."""

    def __post_init__(self) -> None:
        if self.hidden_dim <= 0 or self.hidden_layers <= 0 or self.batch_size <= 0:
            raise ValueError("hidden_dim, hidden_layers and batch_size must be positive")
        if not 0.0 < self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError(f"gamma and tau must be in (0, 1], got {self.gamma}, {self.tau}")


def mlp(in_dim: int, hidden_dim: int, hidden_layers: int, out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(hidden_layers):
        layers += [nn.Linear(dim, hidden_dim), nn.ReLU()]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class EnsembleLinear(nn.Module):
    """``n`` independent linear layers applied with one batched matmul."""

    def __init__(self, n: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, in_dim, out_dim))
        self.bias = nn.Parameter(torch.empty(n, 1, out_dim))
        bound = 1.0 / math.sqrt(in_dim)  # nn.Linear's default init
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)  # (n, B, in) -> (n, B, out)


class TwinCritic(nn.Module):
    """Two Q networks Q(s, a) evaluated together; ``forward`` returns ``(2, B)``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dim: int, hidden_layers: int) -> None:
        super().__init__()
        dims = [obs_dim + act_dim] + [hidden_dim] * hidden_layers + [1]
        self.layers = nn.ModuleList(
            EnsembleLinear(2, dims[i], dims[i + 1]) for i in range(len(dims) - 1)
        )

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1).unsqueeze(0).expand(2, -1, -1)  # (2, B, ds+da)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x.squeeze(-1)  # (2, B)


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy, rescaled to the action bounds."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        config: SACConfig,
        action_low: np.ndarray,
        action_high: np.ndarray,
    ) -> None:
        super().__init__()
        self.net = mlp(obs_dim, config.hidden_dim, config.hidden_layers, 2 * act_dim)
        self.log_std_min = config.log_std_min
        self.log_std_max = config.log_std_max
        low = torch.tensor(np.array(action_low, dtype=np.float32))
        high = torch.tensor(np.array(action_high, dtype=np.float32))
        self.action_scale: torch.Tensor
        self.action_bias: torch.Tensor
        self.register_buffer("action_scale", (high - low) / 2.0)
        self.register_buffer("action_bias", (high + low) / 2.0)

    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw_log_std = self.net(obs).chunk(2, dim=-1)  # (B, da) each
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (
            torch.tanh(raw_log_std) + 1.0
        )
        return mean, log_std

    def sample(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action sample and its log-probability ``(B,)``."""
        mean, log_std = self.distribution(obs)
        std = log_std.exp()
        noise = torch.randn_like(mean)
        pre_tanh = mean + std * noise
        squashed = torch.tanh(pre_tanh)
        # log N(pre_tanh) - log |d tanh / dx|, the latter in its numerically stable form
        log_prob = (-0.5 * noise.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        log_prob = log_prob - (2.0 * (math.log(2.0) - pre_tanh - F.softplus(-2.0 * pre_tanh))).sum(
            -1
        )
        action = squashed * self.action_scale + self.action_bias
        return action, log_prob

    def mean_action(self, obs: torch.Tensor) -> torch.Tensor:
        mean, _ = self.distribution(obs)
        return torch.tanh(mean) * self.action_scale + self.action_bias


class ReplayBuffer:
    """Fixed-capacity ring buffer of transitions in float32 numpy arrays."""

    FIELDS = ("obs", "action", "reward", "next_obs", "terminated")

    def __init__(self, obs_dim: int, act_dim: int, capacity: int) -> None:
        self.capacity = int(capacity)
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.action = np.zeros((capacity, act_dim), dtype=np.float32)
        self.reward = np.zeros((capacity,), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.terminated = np.zeros((capacity,), dtype=np.float32)
        self.size = 0
        self.cursor = 0

    def add(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        next_obs: np.ndarray,
        terminated: bool,
    ) -> None:
        i = self.cursor
        self.obs[i] = obs
        self.action[i] = action
        self.reward[i] = reward
        self.next_obs[i] = next_obs
        self.terminated[i] = float(terminated)
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch_size: int) -> dict[str, torch.Tensor]:
        idx = rng.integers(0, self.size, size=batch_size)
        return {name: torch.from_numpy(getattr(self, name)[idx]) for name in self.FIELDS}

    def arrays(self) -> dict[str, np.ndarray]:
        """The filled part of the buffer plus its cursor, for an npz checkpoint."""
        out = {f"replay/{name}": getattr(self, name)[: self.size] for name in self.FIELDS}
        out["replay/cursor"] = np.array([self.cursor, self.size], dtype=np.int64)
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        cursor, size = (int(v) for v in arrays["replay/cursor"])
        if size > self.capacity:
            raise ValueError(f"checkpoint holds {size} transitions, capacity is {self.capacity}")
        for name in self.FIELDS:
            getattr(self, name)[:size] = arrays[f"replay/{name}"]
        self.cursor, self.size = cursor, size


class SACAgent:
    """Actor, twin critics, their targets, the temperature and the three optimisers."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        action_low: np.ndarray,
        action_high: np.ndarray,
        config: SACConfig,
    ) -> None:
        self.config = config
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.actor = Actor(obs_dim, act_dim, config, action_low, action_high)
        self.critic = TwinCritic(obs_dim, act_dim, config.hidden_dim, config.hidden_layers)
        self.critic_target = TwinCritic(obs_dim, act_dim, config.hidden_dim, config.hidden_layers)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(config.init_alpha)))
        self.target_entropy = -float(act_dim)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.critic_lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=config.alpha_lr)

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.exp())

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        x = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)  # (1, ds)
        action = self.actor.mean_action(x) if deterministic else self.actor.sample(x)[0]
        return action.squeeze(0).numpy().astype(np.float64)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient step on critics, actor and temperature; returns scalar diagnostics."""
        obs, action, reward = batch["obs"], batch["action"], batch["reward"]
        next_obs, terminated = batch["next_obs"], batch["terminated"]
        alpha = self.log_alpha.exp().detach()

        with torch.no_grad():
            next_action, next_log_prob = self.actor.sample(next_obs)
            target_q = self.critic_target(next_obs, next_action).min(dim=0).values  # (B,)
            soft_value = target_q - alpha * next_log_prob
            target = reward + self.config.gamma * (1.0 - terminated) * soft_value  # (B,)
        q = self.critic(obs, action)  # (2, B)
        critic_loss = F.mse_loss(q, target.unsqueeze(0).expand_as(q)) * 2.0
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        self.critic.requires_grad_(False)
        new_action, log_prob = self.actor.sample(obs)
        q_new = self.critic(obs, new_action).min(dim=0).values  # (B,)
        actor_loss = (alpha * log_prob - q_new).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        self.critic.requires_grad_(True)

        alpha_loss = -(self.log_alpha * (log_prob.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            for p, p_target in zip(self.critic.parameters(), self.critic_target.parameters()):
                p_target.lerp_(p, self.config.tau)
        return {
            "critic_loss": critic_loss.item(),
            "actor_loss": actor_loss.item(),
            "alpha": alpha.item(),
            "entropy": -log_prob.detach().mean().item(),
            "q_mean": q.detach().mean().item(),
        }

    # -- flat named state for safetensors / npz checkpoints ---------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for prefix, module in (
            ("actor", self.actor),
            ("critic", self.critic),
            ("critic_target", self.critic_target),
        ):
            for name, tensor in module.state_dict().items():
                out[f"{prefix}.{name}"] = tensor.detach().contiguous().clone()
        out["log_alpha"] = self.log_alpha.detach().reshape(1).clone()
        return out

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        for prefix, module in (
            ("actor", self.actor),
            ("critic", self.critic),
            ("critic_target", self.critic_target),
        ):
            head = prefix + "."  # "critic_target.x" does not start with "critic."
            sub = {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}
            module.load_state_dict(sub)
        with torch.no_grad():
            self.log_alpha.copy_(tensors["log_alpha"].reshape(()))

    def _optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt, "alpha": self.alpha_opt}

    def optimizer_arrays(self) -> dict[str, np.ndarray]:
        """Adam moments and step counts as ``opt/<name>/<param index>/<field>`` arrays."""
        out: dict[str, np.ndarray] = {}
        for opt_name, opt in self._optimizers().items():
            for index, state in opt.state_dict()["state"].items():
                for field, value in state.items():
                    out[f"opt/{opt_name}/{index}/{field}"] = torch.as_tensor(value).numpy()
        return out

    def load_optimizer_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        for opt_name, opt in self._optimizers().items():
            state_dict = opt.state_dict()
            state: dict[int, dict[str, torch.Tensor]] = {}
            prefix = f"opt/{opt_name}/"
            for key, value in arrays.items():
                if not key.startswith(prefix):
                    continue
                index, field = key[len(prefix) :].split("/")
                state.setdefault(int(index), {})[field] = torch.from_numpy(np.array(value))
            state_dict["state"] = state
            opt.load_state_dict(state_dict)
