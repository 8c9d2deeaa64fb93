"""The contract every meta-RL environment family implements: T tasks x R rollouts stepped together.

A meta-RL *task* is one MDP of a family (a goal position, a target velocity, a set of
body parameters, a Meta-World goal); its identity is a row of a float tensor
(``task_dim`` numbers), so a batch of tasks is one ``[T, task_dim]`` tensor that a
checkpoint, a log or a test can hold. An environment steps ``T * R`` episodes at once:
observations ``[T, R, obs_dim]``, actions ``[T, R, action_dim]``, rewards ``[T, R]``.

Episodes have a fixed horizon (Finn et al. 2017, Sec. 5.3; Gao & Sener 2020, App. C):
the sampler always takes ``horizon`` steps. An episode that *terminates* early (the
2D-navigation goal reached, an ant falling over, a Meta-World test task solved) reports
``done = True`` once; the sampler masks every later step of it, and the environment
must accept (and ignore) further actions for that entry, returning a zero reward.

Randomness comes only from the ``torch.Generator`` passed to :meth:`MetaEnv.sample_tasks`
and :meth:`MetaEnv.reset` (simulator-backed families draw their integer reset seeds
from it), never from a global RNG: one seed reproduces a run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

Split = Literal["train", "test"]


@dataclass(frozen=True)
class StepResult:
    """What one batched step returns.

    ``observation`` float32 ``[T, R, obs_dim]``; ``reward`` float32 ``[T, R]`` (zero for an
    entry that terminated before this step); ``done`` bool ``[T, R]`` (True on the step an
    episode terminates and after); ``success`` bool ``[T, R]`` when the family defines
    success (Meta-World), else ``None``."""

    observation: Tensor
    reward: Tensor
    done: Tensor
    success: Tensor | None = None


class MetaEnv(ABC):
    """A family of tasks whose episodes run as one ``[T, R]`` batch.

    Subclasses set ``name``, ``obs_dim``, ``action_dim``, ``task_dim``, ``horizon`` and
    ``action_low`` / ``action_high`` (the box the environment clips actions to; the
    policy's Gaussian is unbounded, as in rllab/ProMP, and the log-probability is taken
    of the unclipped action)."""

    name: str = "meta-env"
    obs_dim: int
    action_dim: int
    task_dim: int
    horizon: int
    action_low: float | Tensor = -1.0
    action_high: float | Tensor = 1.0
    #: True when :meth:`step` can report ``success`` (Meta-World)
    has_success: bool = False

    @abstractmethod
    def sample_tasks(self, n: int, generator: torch.Generator, split: Split = "train") -> Tensor:
        """``n`` tasks as a float tensor ``[n, task_dim]``. ``split="test"`` draws held-out
        tasks (a separate task set where the family has one, as Meta-World; otherwise the
        same distribution, kept apart by the caller's generator)."""

    @abstractmethod
    def reset(self, tasks: Tensor, rollouts: int, generator: torch.Generator) -> Tensor:
        """Start ``rollouts`` episodes of each task; returns observations ``[T, rollouts, obs_dim]``."""

    @abstractmethod
    def step(self, actions: Tensor) -> StepResult:
        """Advance every episode by one step with ``actions`` ``[T, R, action_dim]`` (clipped here)."""

    def close(self) -> None:  # noqa: B027  (a default no-op, not abstract: pure-torch families hold nothing)
        """Release simulator resources (nothing for pure-torch families)."""

    def describe_task(self, task: Tensor) -> str:
        """A short human-readable description of one task row (for logs)."""
        return ", ".join(f"{float(v):.3g}" for v in task.flatten())

    def _check_actions(self, actions: Tensor, shape: tuple[int, int]) -> None:
        """A clear error for actions of the wrong shape (the most common misuse)."""
        want = (*shape, self.action_dim)
        if tuple(actions.shape) != want:
            raise ValueError(
                f"{self.name}: actions must have shape {list(want)} (tasks, rollouts, action_dim) "
                f"as the last reset; got {list(actions.shape)}."
            )
        if not bool(torch.isfinite(actions).all()):
            raise ValueError(
                f"{self.name}: actions contain NaN or inf: the policy diverged (lower the inner or outer step size)."
            )
