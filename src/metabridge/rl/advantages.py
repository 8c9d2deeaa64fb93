"""Discounted returns, generalized advantage estimation, and normalisation over masked episodes.

Returns:  G_t = sum_{l >= 0} gamma^l r_{t+l}  (within the horizon; zero after termination).
GAE (Schulman et al., ICLR 2016, Eq. 16):  delta_t = r_t + gamma V(s_{t+1}) - V(s_t),
A_t = sum_{l >= 0} (gamma lambda)^l delta_{t+l}, with V = 0 past the horizon or the
termination. With lambda = 1 (Gao & Sener; pytorch-maml-rl) A_t = G_t - V(s_t).
Advantages are normalised per task over its unmasked steps (zero mean, unit variance),
as ProMP / pytorch-maml-rl do before every policy-gradient step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .baseline import linear_baseline_values
from .episodes import Episodes


def discounted_returns(rewards: Tensor, mask: Tensor, gamma: float) -> Tensor:
    """G_t along the last axis (``[..., H]``), by a backward scan of H tensor ops."""
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = (rewards[..., t] + gamma * running) * mask[..., t]
        out[..., t] = running
    return out


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> Tensor:
    """A_t of Schulman et al. along the last axis; values and rewards beyond the mask count as zero."""
    values = values * mask
    next_values = torch.cat([values[..., 1:], torch.zeros_like(values[..., :1])], dim=-1)
    deltas = (rewards + gamma * next_values - values) * mask
    out = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = (deltas[..., t] + gamma * lam * running) * mask[..., t]
        out[..., t] = running
    return out


def normalize_per_task(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """(x - mean) / std per task (axis 0) over unmasked entries; masked entries stay 0."""
    dims = tuple(range(1, x.ndim))
    n = mask.sum(dims, keepdim=True).clamp_min(1.0)
    mean = (x * mask).sum(dims, keepdim=True) / n
    var = (((x - mean) * mask) ** 2).sum(dims, keepdim=True) / n
    return (x - mean) / torch.sqrt(var + eps) * mask


def process_episodes(
    episodes: Episodes, gamma: float = 0.99, gae_lambda: float = 1.0, normalize: bool = True
) -> Episodes:
    """Fit each task's linear baseline to its returns and attach (normalised) GAE advantages."""
    returns = discounted_returns(episodes.rewards, episodes.mask, gamma)
    values = linear_baseline_values(episodes.observations, returns, episodes.mask)
    adv = gae(episodes.rewards, values, episodes.mask, gamma, gae_lambda)
    if normalize:
        adv = normalize_per_task(adv, episodes.mask)
    return episodes.with_advantages(adv.detach(), returns.detach())
