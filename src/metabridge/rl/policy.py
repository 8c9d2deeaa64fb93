"""Gaussian MLP policy, evaluated for T tasks with T parameter sets in one call.

pi_theta(a | s) = N(a; mu_theta(s), diag(sigma^2)), mu an MLP (tanh hidden units as in
rllab/ProMP and Gao & Sener; ReLU as in Finn et al.'s 2D navigation), log sigma a
state-independent learned vector initialised to log(init_std) (rllab's
``GaussianMLPPolicy``). The log-density of an action is

    log pi(a | s) = -1/2 sum_j ((a_j - mu_j) / sigma_j)^2 - sum_j log sigma_j - d/2 log(2 pi).

Meta-RL adapts one parameter set per task (theta'_i = theta - alpha grad L_i(theta)), so
the policy is a functional of a parameter dictionary: :func:`policy_forward` maps
parameters with a leading task axis ``[T, ...]`` (or shared parameters) and observations
``[T, N, obs_dim]`` to means ``[T, N, action_dim]`` with ``torch.func.vmap`` over
``functional_call``: one batched forward, no Python loop over tasks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

Params = dict[str, Tensor]
_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


class GaussianMLPPolicy(nn.Module):
    """mu_theta: obs -> hidden -> ... -> action mean; ``log_std`` a free parameter vector."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "tanh",
        init_std: float = 1.0,
        min_log_std: float | None = -6.0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)} (got {activation!r}).")
        if init_std <= 0:
            raise ValueError(f"init_std must be positive (got {init_std}).")
        self.obs_dim, self.action_dim = int(obs_dim), int(action_dim)
        self.hidden, self.activation = tuple(int(h) for h in hidden), activation
        self.min_log_std = min_log_std
        layers: list[nn.Module] = []
        width = self.obs_dim
        with torch.random.fork_rng(devices=[]):  # nn.Linear's own init must not move the global RNG
            for h in self.hidden:
                layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
                width = h
            layers.append(nn.Linear(width, self.action_dim))
        self.mean = nn.Sequential(*layers)
        self.log_std = nn.Parameter(torch.full((self.action_dim,), math.log(init_std)))
        self._init_weights(generator)

    def _init_weights(self, generator: torch.Generator | None) -> None:
        """Xavier-uniform weights and zero biases (pytorch-maml-rl / rllab's default), drawn from
        ``generator`` (the global RNG only when none is given)."""
        for m in self.mean:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight, generator=generator)
                nn.init.zeros_(m.bias)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """(mean ``[..., action_dim]``, log_std ``[action_dim]``) for observations ``[..., obs_dim]``."""
        log_std = self.log_std if self.min_log_std is None else self.log_std.clamp_min(self.min_log_std)
        return self.mean(obs), log_std

    def params(self) -> Params:
        """The parameters as the dictionary every functional routine here takes."""
        return dict(self.named_parameters())

    def config(self) -> dict[str, object]:
        """The constructor arguments (stored in checkpoints to rebuild the policy)."""
        return {
            "obs_dim": self.obs_dim,
            "action_dim": self.action_dim,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "init_std": float(math.exp(float(self.log_std.detach()[0]))),
            "min_log_std": self.min_log_std,
        }


def gaussian_log_prob(actions: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """log N(a; mean, diag(exp(log_std))^2) summed over the last (action) axis."""
    z = (actions - mean) * torch.exp(-log_std)
    return -0.5 * (z * z).sum(-1) - log_std.sum(-1) - 0.5 * actions.shape[-1] * math.log(2 * math.pi)


def gaussian_kl(mean_p: Tensor, log_std_p: Tensor, mean_q: Tensor, log_std_q: Tensor) -> Tensor:
    """KL(N_p || N_q) for diagonal Gaussians, summed over the action axis:
    sum_j log(s_q/s_p) + (s_p^2 + (m_p - m_q)^2) / (2 s_q^2) - 1/2."""
    var_p, var_q = torch.exp(2 * log_std_p), torch.exp(2 * log_std_q)
    return (log_std_q - log_std_p + (var_p + (mean_p - mean_q) ** 2) / (2 * var_q) - 0.5).sum(-1)


def is_batched(params: Params, policy: GaussianMLPPolicy) -> bool:
    """True when ``params`` carry a leading task axis (one parameter set per task)."""
    ref = policy.log_std
    lead = params["log_std"]
    if lead.ndim == ref.ndim:
        return False
    if lead.ndim == ref.ndim + 1:
        return True
    raise ValueError(
        f"policy parameters have an unexpected shape: log_std {list(lead.shape)} for a policy "
        f"whose log_std is {list(ref.shape)}."
    )


def broadcast_log_std(log_std: Tensor, mean: Tensor) -> Tensor:
    """Per-task log-stds ``[T, A]`` shaped to broadcast against means ``[T, ..., A]`` (shared
    ``[A]`` log-stds broadcast as they are)."""
    if log_std.ndim == 2:
        return log_std.reshape(log_std.shape[0], *([1] * (mean.ndim - 2)), log_std.shape[1])
    return log_std


def policy_forward(policy: GaussianMLPPolicy, params: Params, obs: Tensor) -> tuple[Tensor, Tensor]:
    """Means ``[T, N, action_dim]`` and log-stds ``[T, action_dim]`` (or ``[action_dim]``) for
    observations ``[T, N, obs_dim]`` with per-task ``params`` (leading axis T) or shared ones."""
    if not is_batched(params, policy):
        return functional_call(policy, params, (obs,))
    if obs.shape[0] != params["log_std"].shape[0]:
        raise ValueError(f"{params['log_std'].shape[0]} parameter sets for {obs.shape[0]} tasks of observations.")
    return vmap(lambda p, o: functional_call(policy, p, (o,)))(params, obs)


def log_prob(policy: GaussianMLPPolicy, params: Params, obs: Tensor, actions: Tensor) -> Tensor:
    """log pi_params(actions | obs), shape ``obs.shape[:-1]``."""
    mean, log_std = policy_forward(policy, params, obs)
    return gaussian_log_prob(actions, mean, broadcast_log_std(log_std, mean))
