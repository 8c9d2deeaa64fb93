"""The contract of a meta-RL training algorithm: one iteration = sample, then update the policy.

Every algorithm here (MAML-TRPO, first-order MAML-TRPO, DRS with TRPO or PPO) owns a
:class:`~metabridge.rl.policy.GaussianMLPPolicy` and implements
:meth:`MetaRLAlgorithm.train_iteration`, which draws a meta-batch of tasks from the
environment, samples their episodes with the task-batched sampler, and changes the
policy's parameters once. The test-time procedure is the same for all of them
(Gao & Sener 2020, Sec. 5): fine-tune the learned initialisation on each held-out task
with ``k`` policy-gradient steps of size ``inner_lr`` (:mod:`metabridge.rl.evaluate`).

State for exact resume is the module's ``state_dict`` plus :meth:`extra_state` (the
PPO optimizer); randomness comes only from the generator passed in.

An iteration is two halves, :meth:`MetaRLAlgorithm.collect` (draw tasks, sample and
adapt: local to a rank) and :meth:`MetaRLAlgorithm.update` (change the parameters from
what was collected). Data parallelism (:meth:`MetaRLAlgorithm.distribute`): each rank
collects its own shard of the meta-batch from its own generator, and ``update``
averages every mean over tasks across the ranks (:class:`metabridge.collectives.RankMean`),
so that the update is the single-process update on the union of the shards; the
statistics it returns are then the whole meta-batch's (:meth:`MetaRLAlgorithm.global_stats`).
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..advantages import process_episodes
from ..envs.base import MetaEnv
from ..episodes import Episodes
from ..policy import GaussianMLPPolicy, Params, broadcast_log_std, gaussian_kl, log_prob, policy_forward
from ..sampler import sample_episodes

if TYPE_CHECKING:
    from ...collectives import RankMean


def cat_episodes(parts: Sequence[Episodes]) -> Episodes:
    """The episodes of several task shards as one batch (tasks concatenated in order): the
    single-process batch that a data-parallel iteration's shards make up together."""

    def cat(name: str) -> Tensor | None:
        values = [getattr(p, name) for p in parts]
        if any(v is None for v in values):
            return None
        return torch.cat(values)

    return Episodes(*(cat(f) for f in Episodes.__dataclass_fields__))  # type: ignore[arg-type]


def per_task_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Masked mean over every axis but the first (tasks): ``[T]``."""
    dims = tuple(range(1, x.ndim))
    return (x * mask).sum(dims) / mask.sum(dims).clamp_min(1.0)


def surrogate_and_kl(
    policy: GaussianMLPPolicy, params: Params, episodes: Episodes, old_mean: Tensor, old_log_std: Tensor
) -> tuple[Tensor, Tensor]:
    """The TRPO loss -mean_i E_t[pi(a|s) / pi_old(a|s) A_t] and mean_i E_t[KL(pi_old || pi)] over
    the tasks' episodes (per-task masked means, then the mean over tasks)."""
    assert episodes.advantages is not None
    lp = log_prob(policy, params, episodes.observations, episodes.actions)
    ratio = torch.exp(lp - episodes.log_probs)
    loss = -per_task_mean(ratio * episodes.advantages, episodes.mask).mean()
    mean, log_std = policy_forward(policy, params, episodes.observations)
    log_std = broadcast_log_std(log_std, mean)
    kl = gaussian_kl(old_mean, old_log_std, mean, log_std)
    return loss, per_task_mean(kl, episodes.mask).mean()


def behaviour_distribution(policy: GaussianMLPPolicy, params: Params, episodes: Episodes) -> tuple[Tensor, Tensor]:
    """Means and log-stds (detached) of the policy that sampled ``episodes``, for the KL."""
    with torch.no_grad():
        mean, log_std = policy_forward(policy, {k: v.detach() for k, v in params.items()}, episodes.observations)
    return mean, broadcast_log_std(log_std, mean).expand_as(mean).contiguous()


def distribution_of(
    policy: GaussianMLPPolicy,
    names: list[str],
    observations: Tensor,
    transform: Callable[[Params], Params] | None = None,
) -> Callable[..., tuple[Tensor, Tensor]]:
    """``(*tensors) -> (means, log_stds)`` of the policy on ``observations``, the parameters given
    positionally in the order of ``names`` and first passed through ``transform`` (MAML's
    inner step), for :func:`~metabridge.rl.trpo.gaussian_fisher_vector_product`."""

    def distribution(*tensors: Tensor) -> tuple[Tensor, Tensor]:
        params = dict(zip(names, tensors))
        if transform is not None:
            params = transform(params)
        return policy_forward(policy, params, observations)

    return distribution


class MetaRLAlgorithm(nn.Module, ABC):
    """A policy and the rule that improves it from a meta-batch of tasks.

    Args:
        policy: the Gaussian MLP policy (its parameters are the meta-learned initialisation).
        inner_lr: alpha of the policy-gradient fine-tuning step (MAML's inner step; the
            test-time fine-tuning of every method).
        gamma, gae_lambda: discount and GAE lambda (0.99, 1.0 in Finn et al. / Gao & Sener).
        normalize_advantages: per-task advantage normalisation before every gradient.
    """

    name: str = "meta-rl"
    #: batches of episodes sampled per iteration per task (MAML: train + validation = 2)
    samples_per_task_iteration: int = 1

    def __init__(
        self,
        policy: GaussianMLPPolicy,
        inner_lr: float = 0.1,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        normalize_advantages: bool = True,
    ) -> None:
        super().__init__()
        if inner_lr <= 0:
            raise ValueError(f"inner_lr must be positive (got {inner_lr}).")
        if not 0 < gamma <= 1 or not 0 <= gae_lambda <= 1:
            raise ValueError(f"need 0 < gamma <= 1 and 0 <= gae_lambda <= 1 (got {gamma}, {gae_lambda}).")
        self.policy = policy
        self.inner_lr = float(inner_lr)
        self.gamma, self.gae_lambda = float(gamma), float(gae_lambda)
        self.normalize_advantages = bool(normalize_advantages)

    def sample(
        self, env: MetaEnv, params: Params, tasks: Tensor, rollouts: int, generator: torch.Generator
    ) -> Episodes:
        """Sample episodes with ``params`` and attach advantages (per-task baselines)."""
        episodes = sample_episodes(env, self.policy, params, tasks, rollouts, generator)
        return process_episodes(episodes, self.gamma, self.gae_lambda, self.normalize_advantages)

    #: the ranks of a data-parallel run (None: one process); set by :meth:`distribute`
    ranks: RankMean | None = None

    def distribute(self, ranks: RankMean | None) -> None:
        """Average every mean over tasks of :meth:`update` over ``ranks`` (None: one process)."""
        self.ranks = ranks if ranks is not None and ranks.enabled else None

    def collect(self, env: MetaEnv, meta_batch: int, rollouts: int, generator: torch.Generator) -> Any:
        """Draw ``meta_batch`` tasks and sample (and adapt on) their episodes: everything the update
        reads. Local to a rank; a data-parallel run's shards concatenate (:func:`cat_episodes`)."""
        raise NotImplementedError(
            f"{type(self).__name__} implements train_iteration only (no collect/update "
            "split), so it cannot run data-parallel; run it in one process."
        )

    def update(self, batch: Any) -> dict[str, float]:
        """Change the policy once from :meth:`collect`'s ``batch``; returns statistics (at least
        ``env_steps`` and ``return`` of the episodes the update used)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement update().")

    def train_iteration(
        self, env: MetaEnv, meta_batch: int, rollouts: int, generator: torch.Generator
    ) -> dict[str, float]:
        """Sample ``meta_batch`` tasks x ``rollouts`` episodes and update the policy once; returns
        statistics (at least ``env_steps`` and ``return`` of the episodes the update used).
        Default: ``update(collect(...))``."""
        return self.update(self.collect(env, meta_batch, rollouts, generator))

    def global_stats(
        self, stats: dict[str, float], summed: Sequence[str] = ("env_steps",), shared: Sequence[str] = ()
    ) -> dict[str, float]:
        """This rank's statistics turned into the whole meta-batch's, in one all-reduce: the keys in
        ``summed`` are summed over the ranks, those in ``shared`` (already equal on every rank, e.g.
        TRPO's step statistics) kept, every other one (a mean over this rank's tasks) averaged.
        One process: ``stats`` unchanged."""
        if self.ranks is None:
            return stats
        keys = [k for k in stats if k not in shared]
        values = torch.tensor([stats[k] for k in keys], dtype=torch.float64)
        means = self.ranks.mean(values).tolist()
        out = dict(stats)
        for k, v in zip(keys, means):
            out[k] = v * self.ranks.world_size if k in summed else v
        return out

    def hparams(self) -> dict[str, Any]:
        """The constructor arguments besides the policy (for checkpoints and logs)."""
        return {
            "inner_lr": self.inner_lr,
            "gamma": self.gamma,
            "gae_lambda": self.gae_lambda,
            "normalize_advantages": self.normalize_advantages,
        }

    def extra_state(self) -> dict[str, Any]:
        """State besides the parameters that an exact resume needs (an optimizer's)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        del state
