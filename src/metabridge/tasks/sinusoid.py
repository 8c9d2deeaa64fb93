"""Sinusoid regression (Finn, Abbeel & Levine, ICML 2017, Sec. 5.1).

A task is y = A sin(x - phase) with amplitude A ~ U[0.1, 5.0], phase ~ U[0, pi];
inputs x ~ U[-5, 5]. Each task gives ``k_shot`` support and ``q_query`` query
points. With ``num_tasks`` set, tasks are drawn from a fixed pool of that many
(amplitude, phase) pairs and carry their pool index in ``task_ids`` (what MTL's
one-head-per-training-task needs); otherwise every task is fresh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .batch import TaskBatch


@dataclass(frozen=True)
class SinusoidFamily:
    """The task distribution of Finn et al.'s sinusoid experiment."""

    amplitude_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    num_tasks: int | None = None
    pool_seed: int = 0

    def __post_init__(self) -> None:
        if self.num_tasks is not None and self.num_tasks <= 0:
            raise ValueError(f"num_tasks must be positive or None for an infinite family (got {self.num_tasks}).")

    def _pool(self) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(self.pool_seed)
        return self._draw_params(self.num_tasks, g)  # type: ignore[arg-type]

    def _draw_params(self, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
        lo, hi = self.amplitude_range
        amp = lo + (hi - lo) * torch.rand(n, generator=g)
        lo, hi = self.phase_range
        phase = lo + (hi - lo) * torch.rand(n, generator=g)
        return amp, phase

    def sample(self, num_tasks: int, k_shot: int, q_query: int, generator: torch.Generator) -> TaskBatch:
        """Draw ``num_tasks`` tasks; support ``[T, k_shot, 1]``, query ``[T, q_query, 1]``."""
        if num_tasks <= 0 or k_shot <= 0 or q_query <= 0:
            raise ValueError(f"need positive num_tasks, k_shot, q_query (got {num_tasks}, {k_shot}, {q_query}).")
        task_ids = None
        if self.num_tasks is None:
            amp, phase = self._draw_params(num_tasks, generator)
        else:
            pool_amp, pool_phase = self._pool()
            task_ids = torch.randint(self.num_tasks, (num_tasks,), generator=generator)
            amp, phase = pool_amp[task_ids], pool_phase[task_ids]
        lo, hi = self.x_range
        x = lo + (hi - lo) * torch.rand(num_tasks, k_shot + q_query, 1, generator=generator)
        y = amp[:, None, None] * torch.sin(x - phase[:, None, None])
        return TaskBatch(x[:, :k_shot], y[:, :k_shot], x[:, k_shot:], y[:, k_shot:], task_ids=task_ids)
