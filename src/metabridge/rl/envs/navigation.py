"""2D point navigation (Finn, Abbeel & Levine, ICML 2017, Sec. 5.3), batched in pure torch.

A point starts at the origin and must reach a goal g drawn from U[-0.5, 0.5]^2 that it
does not observe. The observation is its position p_t; an action a_t is clipped to
[-0.1, 0.1]^2 and moves it: p_{t+1} = p_t + clip(a_t). The reward is the negative
distance to the goal after the move, r_t = -||p_{t+1} - g||_2, over a horizon of 100
steps. As in the rllab environment the paper used (``point_env_randgoal.py``), an
episode terminates once both coordinates are within 0.01 of the goal.

Finn et al.'s code wraps the environment in rllab's ``normalize``: the policy acts in
[-1, 1]^2, which is mapped linearly onto [-0.1, 0.1]^2 and clipped. ``action_scale``
(default 0.1) is that map, p_{t+1} = p_t + clip(action_scale a_t, -max_action,
max_action); ``action_scale=1`` is pytorch-maml-rl's un-normalised variant. It matters:
a unit-variance initial policy explores 0.1 per step in the first, and is clipped to
the box's corners in the second.

Every one of the T x R episodes is one row of a tensor: a step is four tensor ops, so
the sampler's cost is the policy's. No gym, no simulator: this family is what CI tests.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import MetaEnv, Split, StepResult


class Navigation2D(MetaEnv):
    """Finn et al.'s 2D navigation family.

    Args:
        horizon: steps per episode (100 in the paper).
        goal_low, goal_high: the goal box, U[goal_low, goal_high]^2 (paper: -0.5, 0.5).
        max_action: moves are clipped to [-max_action, max_action] (paper: 0.1).
        action_scale: the policy's action is multiplied by it before clipping (0.1:
            Finn et al.'s normalised actions; 1.0: pytorch-maml-rl).
        success_radius: termination when |p - g| < success_radius in both coordinates
            (rllab: 0.01); ``None`` never terminates early.
        device: where the state lives (the policy's device).
    """

    name = "navigation-2d"
    obs_dim = 2
    action_dim = 2
    task_dim = 2

    def __init__(
        self,
        horizon: int = 100,
        goal_low: float = -0.5,
        goal_high: float = 0.5,
        max_action: float = 0.1,
        action_scale: float = 0.1,
        success_radius: float | None = 0.01,
        device: str | torch.device = "cpu",
    ) -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1 (got {horizon}).")
        if not goal_low < goal_high:
            raise ValueError(f"goal_low must be below goal_high (got {goal_low}, {goal_high}).")
        self.horizon = int(horizon)
        self.goal_low, self.goal_high = float(goal_low), float(goal_high)
        self.max_action, self.action_scale = float(max_action), float(action_scale)
        self.action_low, self.action_high = -self.max_action / self.action_scale, self.max_action / self.action_scale
        self.success_radius = success_radius
        self.device = torch.device(device)
        self._pos: Tensor | None = None
        self._goal: Tensor | None = None
        self._done: Tensor | None = None

    def sample_tasks(self, n: int, generator: torch.Generator, split: Split = "train") -> Tensor:
        if n < 1:
            raise ValueError(f"need at least one task (got {n}).")
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        return (self.goal_low + (self.goal_high - self.goal_low) * u).float()

    def reset(self, tasks: Tensor, rollouts: int, generator: torch.Generator) -> Tensor:
        if tasks.ndim != 2 or tasks.shape[1] != 2:
            raise ValueError(f"navigation-2d tasks are goals of shape [T, 2]; got {list(tasks.shape)}.")
        if rollouts < 1:
            raise ValueError(f"rollouts must be >= 1 (got {rollouts}).")
        t = tasks.shape[0]
        self._goal = tasks.to(self.device, torch.float32)[:, None, :].expand(t, rollouts, 2)
        self._pos = torch.zeros(t, rollouts, 2, device=self.device)
        self._done = torch.zeros(t, rollouts, dtype=torch.bool, device=self.device)
        return self._pos.clone()

    def step(self, actions: Tensor) -> StepResult:
        if self._pos is None or self._goal is None or self._done is None:
            raise RuntimeError("navigation-2d: call reset() before step().")
        self._check_actions(actions, tuple(self._pos.shape[:2]))  # type: ignore[arg-type]
        alive = ~self._done
        move = (self.action_scale * actions.to(self._pos)).clamp(-self.max_action, self.max_action) * alive[..., None]
        self._pos = self._pos + move
        offset = self._pos - self._goal
        reward = -torch.linalg.vector_norm(offset, dim=-1) * alive
        if self.success_radius is not None:
            self._done = self._done | (offset.abs() < self.success_radius).all(dim=-1)
        return StepResult(self._pos.clone(), reward, self._done.clone())

    def describe_task(self, task: Tensor) -> str:
        return f"goal=({float(task[0]):+.3f}, {float(task[1]):+.3f})"
