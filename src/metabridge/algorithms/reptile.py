"""Reptile (Nichol, Achiam & Schulman, 2018), batched version (their Algorithm 2).

For each task, k SGD steps from theta on the task's data give phi_i; the update is

    theta <- theta + epsilon * (1/T) sum_i (phi_i - theta).

Written as a loss for the shared training loop: the surrogate
(1/T) sum_i 0.5 ||theta - stopgrad(phi_i)||^2 has gradient theta - mean_i phi_i, so
an outer SGD step of size epsilon is exactly Reptile's update (Adam on it gives the
common adaptive variant). The inner loop uses the task's support and query points
together (Reptile has no support/query split in training); test-time adaptation is
``eval_steps`` SGD steps on the support set, as in MAML. With a task-batched model
(Conv-4, ``ExecutionOptions(task_batching="auto")``) all tasks' inner loops run at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..tasks.batch import TaskBatch
from .execution import ExecutionOptions
from .inner_loop import LossFn, Params, map_tasks
from .maml import MAML


class Reptile(MAML):
    """First-order meta-learning by moving theta toward the adapted weights.

    Args:
        model: any ``nn.Module`` (its parameters are theta).
        inner_lr: the inner SGD step size; > 0.
        inner_steps: k SGD steps per task in training; >= 1.
        eval_steps: steps at test time (default ``inner_steps``).
        inner_loss: the inner loss for one task; default :func:`task_loss` (see :class:`MAML`).
        execution: :class:`ExecutionOptions` (or a dict of its fields); default ``ExecutionOptions()``.
    """

    name: ClassVar[str] = "reptile"

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float = 0.01,
        inner_steps: int = 5,
        eval_steps: int | None = None,
        *,
        inner_loss: LossFn | None = None,
        execution: ExecutionOptions | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            model, inner_lr, inner_steps, True, None, eval_steps, inner_loss=inner_loss, execution=execution
        )

    def _task_surrogate(self, params: Params, xs: Tensor, ys: Tensor, xq: Tensor, yq: Tensor) -> Tensor:
        x, y = torch.cat([xs, xq]), torch.cat([ys, yq])
        fast = self._adapt_task(params, x, y, self.inner_steps, True)
        return torch.stack([0.5 * ((params[k] - fast[k].detach()) ** 2).sum() for k in self.adapted_names()]).sum()

    def _batched_meta_loss(self, batch: TaskBatch) -> Tensor:
        """The surrogate for all tasks at once (MAML's batched path calls it, chunked or not)."""
        params = self._params()
        x = torch.cat([batch.support_x, batch.query_x], 1)
        y = torch.cat([batch.support_y, batch.query_y], 1)
        fast = self._batched_adapt(params, x, y, self.inner_steps, True)
        total = torch.stack([0.5 * ((params[k] - fast[k].detach()) ** 2).sum() for k in self.adapted_names()]).sum()
        return total / batch.num_tasks

    def meta_loss(self, batch: TaskBatch) -> Tensor:
        if self.batched:
            return super().meta_loss(batch)
        losses = map_tasks(
            self._task_surrogate,
            self._params(),
            batch.support_x,
            batch.support_y,
            batch.query_x,
            batch.query_y,
            mode=self._task_map,
        )
        return losses.mean()
