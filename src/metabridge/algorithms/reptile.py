"""Reptile (Nichol, Achiam & Schulman, 2018), batched version (their Algorithm 2).

For each task, k SGD steps from theta on the task's data give phi_i; the update is

    theta <- theta + epsilon * (1/T) sum_i (phi_i - theta).

Written as a loss for the shared training loop: the surrogate
(1/T) sum_i 0.5 ||theta - stopgrad(phi_i)||^2 has gradient theta - mean_i phi_i, so
an outer SGD step of size epsilon is exactly Reptile's update (Adam on it gives the
common adaptive variant). The inner loop uses the task's support and query points
together (Reptile has no support/query split in training); test-time adaptation is
``eval_steps`` SGD steps on the support set, as in MAML.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from ..tasks.batch import TaskBatch
from .inner_loop import Params, TaskBatching, map_tasks
from .maml import MAML


class Reptile(MAML):
    """First-order meta-learning by moving theta toward the adapted weights."""

    name: ClassVar[str] = "reptile"

    def __init__(self, model: nn.Module, inner_lr: float = 0.01, inner_steps: int = 5,
                 eval_steps: int | None = None, task_batching: TaskBatching = "vmap") -> None:
        super().__init__(model, inner_lr, inner_steps, True, None, eval_steps, task_batching)

    def _task_surrogate(self, params: Params, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Tensor:
        x, y = torch.cat([xs, xq]), torch.cat([ys, yq])
        fast = self._adapt_task(params, x, y, self.inner_steps, True)
        return sum(0.5 * ((params[k] - fast[k].detach()) ** 2).sum() for k in self.adapted_names())

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        losses = map_tasks(self._task_surrogate, self._params(), batch.support_x, batch.support_y,
                           batch.query_x, batch.query_y, mode=self.task_batching)
        return losses.mean()
