"""Domain-randomized search with TRPO (Gao & Sener, NeurIPS 2020, Sec. 3 and 5).

DRS ignores the meta-learning structure at training time: it pools the episodes of all
tasks of the meta-batch, sampled with the one policy pi_theta, into one ordinary TRPO
step on the joint objective (the single-level problem of Gao & Sener's Eq. 2):

    max_theta  1/T sum_i E_{D_i}[ pi_theta(a|s) / pi_theta_old(a|s) A_t ]
    s.t.       1/T sum_i E_{D_i}[ KL(pi_theta_old || pi_theta) ] <= delta.

Each task keeps its own linear baseline and advantage normalisation (as the meta-learning
sampler processes them). At test time the policy is fine-tuned like MAML's
initialisation (:mod:`metabridge.rl.evaluate`). One iteration samples half of what a
MAML iteration does, so equal-sample comparisons give DRS twice the iterations.
"""

from __future__ import annotations

import torch

from ..envs.base import MetaEnv
from ..episodes import Episodes
from .base import behaviour_distribution, distribution_of, surrogate_and_kl
from .trpo_base import TRPOMetaAlgorithm, fisher_rollouts, with_success


class DRSTRPO(TRPOMetaAlgorithm):
    """Domain-randomized search with TRPO (Gao & Sener 2020): one TRPO step on the pooled episodes of
    every task.

    Settings as :class:`~metabridge.rl.algorithms.trpo_base.TRPOMetaAlgorithm`."""

    name = "drs-trpo"

    def collect(self, env: MetaEnv, meta_batch: int, rollouts: int, generator: torch.Generator) -> Episodes:
        """Tasks and their episodes under the shared policy (per-task baselines)."""
        tasks = env.sample_tasks(meta_batch, generator)
        return self.sample(env, self.policy.params(), tasks, rollouts, generator)

    def update(self, episodes: Episodes) -> dict[str, float]:
        """The TRPO step on the pooled episodes (averaged over the ranks when distributed)."""
        policy = self.policy
        theta = policy.params()
        old_mean, old_log_std = behaviour_distribution(policy, theta, episodes)

        def objective() -> tuple[torch.Tensor, torch.Tensor]:
            return surrogate_and_kl(policy, theta, episodes, old_mean, old_log_std)

        subset = episodes.first_rollouts(fisher_rollouts(episodes.rollouts, self.fisher_subsample))
        update = self.trpo_update(objective, distribution_of(policy, list(theta), subset.observations), subset.mask)
        out = {"env_steps": float(episodes.env_steps), "return": float(episodes.task_returns().mean()), **update}
        return self.global_stats(with_success(out, episodes.success_rate(), "success"), shared=tuple(update))
