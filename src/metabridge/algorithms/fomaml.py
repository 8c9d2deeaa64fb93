"""First-order MAML (Finn et al. 2017, Sec. 5.2): MAML with the second-order terms
dropped, i.e. the meta-gradient is grad_phi L(phi_i^(k); D_i^ts) evaluated at the
adapted parameters and applied to theta (d phi / d theta taken as the identity)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import nn

from .execution import ExecutionOptions
from .inner_loop import LossFn
from .maml import MAML, LearnedLR


class FOMAML(MAML):
    """:class:`MAML` with ``first_order=True``.

    Args:
        model: any ``nn.Module`` (its parameters are theta).
        inner_lr: alpha (initial value when learned); > 0.
        inner_steps: k steps during meta-training; >= 1.
        learn_inner_lr: ``None``, ``"per_step"`` (MAML++ LSLR) or ``"per_parameter"`` (Meta-SGD).
        eval_steps: steps at test time (default ``inner_steps``).
        inner_loss: the inner (support) loss for one task; default :func:`task_loss` (see :class:`MAML`).
        outer_loss: the outer (query) loss for one task; default :func:`task_loss`.
        execution: :class:`ExecutionOptions` (or a dict of its fields); default ``ExecutionOptions()``.
    """

    name: ClassVar[str] = "fomaml"

    def __init__(
        self,
        model: nn.Module,
        inner_lr: float = 0.01,
        inner_steps: int = 1,
        learn_inner_lr: LearnedLR = None,
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
            True,
            learn_inner_lr,
            eval_steps,
            inner_loss=inner_loss,
            outer_loss=outer_loss,
            execution=execution,
        )
