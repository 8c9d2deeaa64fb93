"""Fine-tuning evaluation of a meta-RL initialisation (Finn et al. 2017, Fig. 5; Gao & Sener 2020, Sec. 5).

On held-out tasks, starting from theta: sample R episodes, take a policy-gradient step
theta^{(k+1)}_i = theta^{(k)}_i - alpha grad L_i(theta^{(k)}_i) on them (first order: no
graph is kept), and repeat; the metric after k updates is the average undiscounted
return of the episodes sampled with theta^{(k)}_i (k = 0 is theta itself). Every task
is adapted in the same batched call; the result is a ``[K + 1, T]`` tensor of returns
(and of success rates where the family defines success), reported as the mean over the T
tasks with its 95% confidence interval (1.96 standard errors over tasks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..stats import MeanCI, mean_ci95
from .advantages import process_episodes
from .envs.base import MetaEnv
from .inner_step import adapt
from .policy import GaussianMLPPolicy, Params
from .sampler import sample_episodes


@dataclass(frozen=True)
class FinetuneResult:
    """``returns[k, i]``: average return on task i after k updates; ``success`` likewise or None."""

    returns: Tensor
    success: Tensor | None
    env_steps: int

    def mean_returns(self) -> list[float]:
        return [float(r) for r in self.returns.mean(1)]

    def returns_ci95(self) -> list[float]:
        """Half-width of the 95% CI over tasks of each ``returns[k]``
        (:func:`metabridge.stats.mean_ci95`; 0.0 for a single task)."""
        return _ci95_rows(self.returns)

    def returns_summary(self) -> list[MeanCI]:
        """``returns[k]`` as mean ± 95% CI over the tasks, one per number of updates k."""
        return [MeanCI(m, c, self.returns.shape[1]) for m, c in zip(self.mean_returns(), self.returns_ci95())]

    def mean_success(self) -> list[float] | None:
        return None if self.success is None else [float(s) for s in self.success.mean(1)]

    def success_ci95(self) -> list[float] | None:
        """Half-width of the 95% CI over tasks of each success rate (None where success is not defined)."""
        return None if self.success is None else _ci95_rows(self.success)


def _ci95_rows(values: Tensor) -> list[float]:
    """Half-width of the 95% CI of the mean of each row of ``[K + 1, T]`` ``values`` (0.0 for one task)."""
    return [mean_ci95(r).ci95 if r.numel() > 1 else 0.0 for r in values]


def finetune_returns(
    env: MetaEnv,
    policy: GaussianMLPPolicy,
    tasks: Tensor,
    rollouts: int,
    updates: int,
    inner_lr: float | Sequence[float],
    generator: torch.Generator,
    params: Params | None = None,
    gamma: float = 0.99,
    gae_lambda: float = 1.0,
    normalize_advantages: bool = True,
) -> FinetuneResult:
    """Returns after 0..``updates`` policy-gradient steps of size ``inner_lr`` on each task.

    ``inner_lr`` is one step size or one per update (Finn et al.'s 2D-navigation test used
    0.5 for the first and 0.25 after); a list shorter than ``updates`` repeats its last."""
    lrs = [float(inner_lr)] if isinstance(inner_lr, (int, float)) else [float(x) for x in inner_lr]
    if not lrs or any(lr <= 0 for lr in lrs):
        raise ValueError(f"fine-tuning step sizes must be positive (got {inner_lr}).")
    if updates < 0:
        raise ValueError(f"updates must be >= 0 (got {updates}).")
    current: Params = {k: v.detach() for k, v in (params or policy.params()).items()}
    returns, success, steps = [], [], 0
    for k in range(updates + 1):
        episodes = sample_episodes(env, policy, current, tasks, rollouts, generator)
        steps += episodes.env_steps
        returns.append(episodes.task_returns())
        rate = episodes.success_rate()
        if rate is not None:
            success.append(rate)
        if k == updates:
            break
        episodes = process_episodes(episodes, gamma, gae_lambda, normalize_advantages)
        lr = lrs[min(k, len(lrs) - 1)]
        current = {n: v.detach() for n, v in adapt(policy, current, episodes, lr, first_order=True).items()}
    return FinetuneResult(torch.stack(returns), torch.stack(success) if success else None, steps)
