"""Meta-SGD (Li, Zhou, Chen & Li, 2017): MAML whose inner step size is a learned
vector alpha of the same shape as theta (their Eq. 2),

    phi_i = theta - alpha (.) grad L(theta; D_i^tr),

with theta and alpha meta-learned together through the query loss (second order)."""

from __future__ import annotations

from typing import ClassVar

from torch import nn

from .inner_loop import TaskBatching
from .maml import MAML


class MetaSGD(MAML):
    """:class:`MAML` with ``learn_inner_lr="per_parameter"``; one step by default as in the paper."""

    name: ClassVar[str] = "metasgd"

    def __init__(self, model: nn.Module, inner_lr: float = 0.01, inner_steps: int = 1,
                 first_order: bool = False, eval_steps: int | None = None,
                 task_batching: TaskBatching = "vmap") -> None:
        super().__init__(model, inner_lr, inner_steps, first_order, "per_parameter", eval_steps, task_batching)
