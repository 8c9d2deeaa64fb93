"""Meta-SGD (Li, Zhou, Chen & Li, 2017): MAML whose inner step size is a learned
vector alpha of the same shape as theta (their Eq. 2),

    phi_i = theta - alpha (.) grad L(theta; D_i^tr),

with theta and alpha meta-learned together through the query loss (second order)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import nn

from .execution import ExecutionOptions
from .inner_loop import LossFn
from .maml import MAML


class MetaSGD(MAML):
    """:class:`MAML` with ``learn_inner_lr="per_parameter"``; one step by default as in the paper.

    Args:
        model: any ``nn.Module`` (its parameters are theta).
        inner_lr: initial value of every entry of alpha; > 0.
        inner_steps: k steps during meta-training (the paper: 1); >= 1.
        first_order: drop the second-order terms.
        eval_steps: steps at test time (default ``inner_steps``).
        inner_loss: the inner (support) loss for one task; default :func:`task_loss` (see :class:`MAML`).
        outer_loss: the outer (query) loss for one task; default :func:`task_loss`.
        execution: :class:`ExecutionOptions` (or a dict of its fields); default ``ExecutionOptions()``.
    """

    name: ClassVar[str] = "metasgd"

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float = 0.01,
        inner_steps: int = 1,
        first_order: bool = False,
        eval_steps: int | None = None,
        *,
        inner_loss: LossFn | None = None,
        outer_loss: LossFn | None = None,
        execution: ExecutionOptions | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            model,
            inner_lr,
            inner_steps,
            first_order,
            "per_parameter",
            eval_steps,
            inner_loss=inner_loss,
            outer_loss=outer_loss,
            execution=execution,
        )
