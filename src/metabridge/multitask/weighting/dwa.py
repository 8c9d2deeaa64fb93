"""Dynamic Weight Average: Liu, Johns & Davison 2019, "End-to-End Multi-Task Learning with
Attention" (CVPR), eq. 8. The weights of epoch t come from the rates at which the tasks' losses
fell over the two previous epochs:

    w_i(t) = K exp(r_i(t-1) / T) / sum_j exp(r_j(t-1) / T) = K softmax_i(r(t-1) / T),
    r_i(t-1) = Lbar_i(t-1) / Lbar_i(t-2),

where Lbar_i(e) is task i's training loss averaged over the steps of epoch e (the authors' code
averages the per-iteration losses of the epoch) and T is a temperature (T = 2 in the paper). A
task whose loss falls more slowly (larger r) gets more weight; the weights sum to K. For the
first two epochs (t = 0, 1) there is no ratio yet and w_i = 1.

The objective is sum_i w_i L_i. :meth:`DynamicWeightAverage.objective` accumulates the detached
losses of the epoch and :meth:`DynamicWeightAverage.end_epoch` rolls the averages over (an epoch
in which ``objective`` was never called does not count).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from .base import Needs, Weighting
from .registry import register_weighting

__all__ = ["DynamicWeightAverage"]


@register_weighting("dwa")
class DynamicWeightAverage(Weighting):
    """``K softmax(r / T)`` with ``r_i = Lbar_i(t-1) / Lbar_i(t-2)`` (epoch-averaged losses); 1 for
    the first two epochs."""

    epoch_loss_sum: Tensor
    epoch_steps: Tensor
    last_avg: Tensor
    previous_avg: Tensor
    epochs_done: Tensor

    name: ClassVar[str] = "dwa"
    needs: ClassVar[Needs] = Needs.LOSSES

    def __init__(self, num_tasks: int, temperature: float = 2.0) -> None:
        super().__init__(num_tasks)
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(
                f"DynamicWeightAverage: temperature must be a finite number > 0 (the paper uses 2); "
                f"got {temperature!r}."
            )
        self.temperature = float(temperature)
        # Buffers, so that the history moves with .to(device) and is saved in state_dict() (float32: MPS has no
        # float64).
        self.register_buffer("epoch_loss_sum", torch.zeros(num_tasks, dtype=torch.float32))
        self.register_buffer("epoch_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("last_avg", torch.zeros(num_tasks, dtype=torch.float32))  # Lbar(t-1)
        self.register_buffer("previous_avg", torch.zeros(num_tasks, dtype=torch.float32))  # Lbar(t-2)
        self.register_buffer("epochs_done", torch.zeros((), dtype=torch.long))

    def current_weights(self) -> Tensor:
        """The weights of the current epoch ([K], float32)."""
        if int(self.epochs_done) < 2:
            return torch.ones_like(self.last_avg)
        ratio = self.last_avg / self.previous_avg
        # A task whose average loss was exactly 0 two epochs ago has no defined rate: treat it as unchanged.
        ratio = torch.where(self.previous_avg > 0, ratio, torch.ones_like(ratio))
        return self.num_tasks * torch.softmax(ratio / self.temperature, dim=0)

    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        detached = losses.detach()
        self.epoch_loss_sum += detached.to(self.epoch_loss_sum)
        self.epoch_steps += 1
        weights = self.current_weights().to(device=losses.device, dtype=losses.dtype)
        return (weights * losses).sum(), weights

    def end_epoch(self) -> None:
        if int(self.epoch_steps) == 0:
            return
        self.previous_avg.copy_(self.last_avg)
        self.last_avg.copy_(self.epoch_loss_sum / self.epoch_steps)
        self.epoch_loss_sum.zero_()
        self.epoch_steps.zero_()
        self.epochs_done += 1

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={self.temperature}"
