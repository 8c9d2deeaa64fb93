"""A batch of fixed-horizon episodes for T tasks x R rollouts, as tensors.

Every field has the leading axes ``[T, R, H]`` (tasks, rollouts per task, horizon):
``observations [T, R, H, obs_dim]``, ``actions [T, R, H, action_dim]`` (unclipped, as the
policy drew them), ``rewards [T, R, H]``, ``mask [T, R, H]`` (1 while the episode is
running, 0 after it terminated), ``log_probs [T, R, H]`` of the behaviour policy
(detached). ``advantages`` / ``returns`` are filled by
:func:`metabridge.rl.advantages.process_episodes`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class Episodes:
    """T x R episodes of one horizon (see the module docstring for the shapes)."""

    tasks: Tensor
    observations: Tensor
    actions: Tensor
    rewards: Tensor
    mask: Tensor
    log_probs: Tensor
    success: Tensor | None = None
    advantages: Tensor | None = None
    returns: Tensor | None = None

    @property
    def num_tasks(self) -> int:
        return int(self.rewards.shape[0])

    @property
    def rollouts(self) -> int:
        return int(self.rewards.shape[1])

    @property
    def horizon(self) -> int:
        return int(self.rewards.shape[2])

    @property
    def env_steps(self) -> int:
        """Environment steps actually taken (terminated steps not counted)."""
        return int(self.mask.sum().item())

    def episode_returns(self) -> Tensor:
        """Undiscounted return of each episode, ``[T, R]``."""
        return (self.rewards * self.mask).sum(-1)

    def task_returns(self) -> Tensor:
        """Average undiscounted return per task, ``[T]`` (the metric of Finn et al. and Gao & Sener)."""
        return self.episode_returns().mean(-1)

    def success_rate(self) -> Tensor | None:
        """Fraction of episodes per task that succeeded at any step (Meta-World's metric), ``[T]``."""
        if self.success is None:
            return None
        return self.success.any(-1).float().mean(-1)

    def with_advantages(self, advantages: Tensor, returns: Tensor) -> Episodes:
        return replace(self, advantages=advantages, returns=returns)

    def select_tasks(self, index: Tensor | slice) -> Episodes:
        """The episodes of a subset of the tasks (for sharding a meta-batch)."""

        def pick(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[index]

        return Episodes(
            self.tasks[index],
            self.observations[index],
            self.actions[index],
            self.rewards[index],
            self.mask[index],
            self.log_probs[index],
            pick(self.success),
            pick(self.advantages),
            pick(self.returns),
        )

    def first_rollouts(self, k: int) -> Episodes:
        """The first ``k`` rollouts of every task (episodes are i.i.d., so a uniform subset)."""

        def pick(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[:, :k]

        return Episodes(
            self.tasks,
            *(
                pick(getattr(self, f))
                for f in ("observations", "actions", "rewards", "mask", "log_probs", "success", "advantages", "returns")  # type: ignore[arg-type]
            ),
        )

    def to(self, device: torch.device | str) -> Episodes:
        def move(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.to(device)

        return Episodes(*(move(getattr(self, f)) for f in self.__dataclass_fields__))  # type: ignore[arg-type]
