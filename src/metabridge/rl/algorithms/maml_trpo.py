"""MAML for reinforcement learning with a TRPO meta-step (Finn, Abbeel & Levine, ICML 2017, Alg. 3).

For a meta-batch of tasks T_i: sample D_i with pi_theta, adapt
theta'_i = theta - alpha grad L_i(theta) (:func:`metabridge.rl.inner_step.adapt`), sample
D'_i with pi_theta'_i, and update theta by TRPO on the post-adaptation surrogate

    max_theta  1/T sum_i E_{D'_i}[ pi_{theta'_i(theta)}(a|s) / pi_{theta'_i(theta_old)}(a|s) A_t ]
    s.t.       1/T sum_i E_{D'_i}[ KL(pi_{theta'_i(theta_old)} || pi_{theta'_i(theta)}) ] <= delta.

Second order (default): theta'_i(theta) is differentiated through the inner step, so the
gradient holds the alpha grad^2 L_i term and the Fisher-vector products differentiate
through it too (as pytorch-maml-rl and Finn's rllab code; here as J' H J with J the
Jacobian of the adapted policy's outputs in theta, exact at theta_old). ``first_order=True``
drops those terms (first-order MAML-TRPO). All T tasks are adapted in one vmapped call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..envs.base import MetaEnv
from ..episodes import Episodes
from ..inner_step import adapt
from ..policy import GaussianMLPPolicy, Params
from .base import behaviour_distribution, cat_episodes, distribution_of, surrogate_and_kl
from .trpo_base import TRPOMetaAlgorithm, fisher_rollouts, with_success


class MAMLTRPO(TRPOMetaAlgorithm):
    """MAML-TRPO (Finn et al. 2017): a TRPO meta-step on the surrogate after one policy-gradient
    adaptation step per task.

    ``first_order=True`` for its first-order variant (registered as ``fo-maml-trpo``); TRPO
    settings as :class:`~metabridge.rl.algorithms.trpo_base.TRPOMetaAlgorithm`."""

    name = "maml-trpo"
    samples_per_task_iteration = 2

    def __init__(
        self, policy: GaussianMLPPolicy, inner_lr: float = 0.1, first_order: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(policy, inner_lr, **kwargs)
        self.first_order = bool(first_order)
        if self.first_order:
            self.name = "fo-maml-trpo"

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), "first_order": self.first_order}

    def collect(self, env: MetaEnv, meta_batch: int, rollouts: int, generator: torch.Generator) -> MAMLBatch:
        """Tasks, their pre-adaptation episodes D_i, the adapted theta'_i(theta_old) and the
        post-adaptation episodes D'_i (each task's baseline fitted on its own episodes)."""
        policy = self.policy
        theta = policy.params()
        tasks = env.sample_tasks(meta_batch, generator)
        train = self.sample(env, theta, tasks, rollouts, generator)
        adapted_old = {k: v.detach() for k, v in adapt(policy, theta, train, self.inner_lr, True).items()}
        valid = self.sample(env, adapted_old, tasks, rollouts, generator)
        return MAMLBatch(train, valid, adapted_old)

    def update(self, batch: MAMLBatch) -> dict[str, float]:
        """The TRPO meta-step on ``batch`` (averaged over the ranks when distributed: see
        :meth:`TRPOMetaAlgorithm.trpo_update`)."""
        policy = self.policy
        theta = policy.params()
        train, valid, rollouts = batch.train, batch.valid, batch.valid.rollouts
        old_mean, old_log_std = behaviour_distribution(policy, batch.adapted_old, valid)

        def objective() -> tuple[torch.Tensor, torch.Tensor]:
            adapted = adapt(policy, theta, train, self.inner_lr, self.first_order)
            return surrogate_and_kl(policy, adapted, valid, old_mean, old_log_std)

        k = fisher_rollouts(rollouts, self.fisher_subsample)
        train_f, valid_f = train.first_rollouts(k), valid.first_rollouts(k)

        def inner(p: Params) -> Params:
            return adapt(policy, p, train_f, self.inner_lr, self.first_order)

        update = self.trpo_update(
            objective, distribution_of(policy, list(theta), valid_f.observations, inner), valid_f.mask
        )
        out = {
            "env_steps": float(train.env_steps + valid.env_steps),
            "return": float(train.task_returns().mean()),
            "return_adapted": float(valid.task_returns().mean()),
            **update,
        }
        return self.global_stats(with_success(out, valid.success_rate(), "success_adapted"), shared=tuple(update))


class FirstOrderMAMLTRPO(MAMLTRPO):
    """First-order MAML-TRPO: MAML-TRPO without the second-order terms of the inner step.

    :class:`MAMLTRPO` with ``first_order=True``: the alpha grad^2 L_i term and the differentiation
    of the Fisher-vector products through the inner step are dropped."""

    name = "fo-maml-trpo"

    def __init__(self, policy: GaussianMLPPolicy, inner_lr: float = 0.1, **kwargs: Any) -> None:
        super().__init__(policy, inner_lr, first_order=True, **kwargs)


@dataclass(frozen=True)
class MAMLBatch:
    """What one MAML-TRPO iteration collected: D_i, D'_i and theta'_i(theta_old) (task axis first)."""

    train: Episodes
    valid: Episodes
    adapted_old: Params

    @staticmethod
    def cat(parts: list[MAMLBatch]) -> MAMLBatch:
        """The shards of a data-parallel iteration as one single-process batch (tasks in order)."""
        return MAMLBatch(
            cat_episodes([p.train for p in parts]),
            cat_episodes([p.valid for p in parts]),
            {k: torch.cat([p.adapted_old[k] for p in parts]) for k in parts[0].adapted_old},
        )
