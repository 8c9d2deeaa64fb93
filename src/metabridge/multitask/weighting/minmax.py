"""Min-max (worst-case) multi-task objective, CS330 lecture 2: optimise the worst task,

    min_theta max_i L_i(theta).

``temperature=0``: the exact max. Its (sub)gradient puts weight 1 on the task with the largest
loss; when several tasks tie for the max, the weight is split evenly among them (the mean of
their gradients, an element of the subdifferential), so

    w_i = 1[L_i = max_j L_j] / #{j : L_j = max_j L_j},   objective sum_i w_i L_i = max_i L_i.

``temperature=t > 0``: the smooth maximum

    t * log sum_i exp(L_i / t),    weights w = softmax(L / t) (its gradient w.r.t. L),

which lies between max_i L_i and max_i L_i + t log K, so it tends to the max as t -> 0; as
t -> infinity the weights tend to 1/K (the objective to mean_i L_i + t log K).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from .base import Needs, Weighting
from .registry import register_weighting

__all__ = ["MinMaxWeighting"]


@register_weighting("minmax")
class MinMaxWeighting(Weighting):
    """The worst task's loss (``temperature=0``) or its log-sum-exp smoothing (``temperature>0``)."""

    name: ClassVar[str] = "minmax"
    needs: ClassVar[Needs] = Needs.LOSSES

    def __init__(self, num_tasks: int, temperature: float = 0.0) -> None:
        super().__init__(num_tasks)
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature >= 0):
            raise ValueError(
                f"MinMaxWeighting: temperature must be a finite number >= 0 (0 for the exact max, "
                f"> 0 for the smooth max); got {temperature!r}."
            )
        self.temperature = float(temperature)

    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        if self.temperature == 0.0:
            values = losses.detach()
            top = (values == values.max()).to(losses.dtype)
            weights = top / top.sum()
            return (weights * losses).sum(), weights
        t = self.temperature
        total = t * torch.logsumexp(losses / t, dim=0)
        return total, torch.softmax(losses.detach() / t, dim=0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={self.temperature}"
