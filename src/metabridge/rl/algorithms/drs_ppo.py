"""Domain-randomized search with PPO (Gao & Sener, NeurIPS 2020, Sec. 5: the pair of ProMP).

The pooled episodes of every task of the meta-batch, sampled with one policy pi_theta,
are optimised with PPO's clipped surrogate (Schulman et al. 2017, Eq. 7) for
``epochs`` passes of Adam:

    L(theta) = -1/T sum_i E_{D_i}[ min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t) ],
    rho_t = pi_theta(a_t|s_t) / pi_theta_old(a_t|s_t),

with per-task baselines and advantage normalisation. The Adam state is part of the
checkpoint (:meth:`extra_state`) so that a resumed run is the uninterrupted run.
"""

from __future__ import annotations

from typing import Any

import torch

from ..envs.base import MetaEnv
from ..episodes import Episodes
from ..policy import GaussianMLPPolicy, log_prob
from .base import MetaRLAlgorithm, per_task_mean
from .trpo_base import with_success


class DRSPPO(MetaRLAlgorithm):
    """Domain-randomized search with PPO (Gao & Sener 2020): PPO's clipped surrogate on the pooled
    episodes of every task.

    Args (besides :class:`MetaRLAlgorithm`'s): learning_rate (Adam), clip (epsilon),
    epochs (full-batch passes per iteration), max_grad_norm (``None``: no clipping)."""

    name = "drs-ppo"

    def __init__(
        self,
        policy: GaussianMLPPolicy,
        inner_lr: float = 0.1,
        learning_rate: float = 1e-3,
        clip: float = 0.2,
        epochs: int = 5,
        max_grad_norm: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(policy, inner_lr, **kwargs)
        if not 0 < clip < 1 or epochs < 1 or learning_rate <= 0:
            raise ValueError(
                f"need 0 < clip < 1, epochs >= 1, learning_rate > 0 (got {clip}, {epochs}, {learning_rate})."
            )
        self.learning_rate, self.clip, self.epochs = float(learning_rate), float(clip), int(epochs)
        self.max_grad_norm = max_grad_norm
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=self.learning_rate)

    def hparams(self) -> dict[str, Any]:
        return {
            **super().hparams(),
            "learning_rate": self.learning_rate,
            "clip": self.clip,
            "epochs": self.epochs,
            "max_grad_norm": self.max_grad_norm,
        }

    def extra_state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "optimizer" in state:
            self.optimizer.load_state_dict(state["optimizer"])

    def collect(self, env: MetaEnv, meta_batch: int, rollouts: int, generator: torch.Generator) -> Episodes:
        """Tasks and their episodes under pi_theta_old (per-task baselines)."""
        tasks = env.sample_tasks(meta_batch, generator)
        return self.sample(env, self.policy.params(), tasks, rollouts, generator)

    def update(self, episodes: Episodes) -> dict[str, float]:
        """``epochs`` Adam steps on the clipped surrogate of ``episodes``.

        Data-parallel (:meth:`distribute`): L is a mean over tasks, L = (1/W) sum_r L_r over the
        ranks' equal shards, so each epoch's gradient is the mean over ranks of grad L_r (one
        all-reduce, which also carries the loss and clip fraction), taken before clipping and
        Adam; every rank then takes the single-process step on the union of the tasks."""
        policy = self.policy
        assert episodes.advantages is not None
        adv, mask = episodes.advantages, episodes.mask
        loss_value, clip_fraction = 0.0, 0.0
        for _ in range(self.epochs):
            lp = log_prob(policy, policy.params(), episodes.observations, episodes.actions)
            ratio = torch.exp(lp - episodes.log_probs)
            clipped = ratio.clamp(1 - self.clip, 1 + self.clip)
            loss = -per_task_mean(torch.minimum(ratio * adv, clipped * adv), mask).mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.ranks is not None:
                fraction = per_task_mean(((ratio.detach() - 1).abs() > self.clip).to(ratio.dtype), mask).mean()
                loss_mean, fraction_mean = self.ranks.average_grads(
                    list(policy.parameters()), [loss.detach(), fraction]
                )
            if self.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), self.max_grad_norm)
            self.optimizer.step()
            if self.ranks is not None:
                loss_value, clip_fraction = float(loss_mean), float(fraction_mean)
            else:
                loss_value = float(loss.detach())
                clip_fraction = float(per_task_mean(((ratio - 1).abs() > self.clip).float(), mask).mean())
        out = {
            "env_steps": float(episodes.env_steps),
            "return": float(episodes.task_returns().mean()),
            "surrogate": -loss_value,
            "clip_fraction": clip_fraction,
        }
        return self.global_stats(
            with_success(out, episodes.success_rate(), "success"), shared=("surrogate", "clip_fraction")
        )
