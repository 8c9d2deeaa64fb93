"""Equal weighting: the unweighted multi-task objective (CS330 lecture 2, w_i = 1).

``"equal"`` (``reduction="sum"``) is linear scalarisation with unit weights,

    L(theta) = sum_i L_i(theta),        weights w_i = 1,

which is what LibMTL's ``EW`` computes (``losses.sum()``, although its docstring says the
mean) and what Nash-MTL's ``"ls"`` baseline computes. ``"mean"`` (``reduction="mean"``) is

    L(theta) = (1/K) sum_i L_i(theta),  weights w_i = 1/K,

the same direction scaled by 1/K; with an adaptive optimiser (Adam) the two give nearly the
same trajectory, with SGD the mean is the sum at a K-times smaller learning rate.
"""

from __future__ import annotations

import functools
from typing import ClassVar, Literal

from torch import Tensor

from .base import Needs, Weighting
from .registry import register_weighting

__all__ = ["EqualWeighting"]

Reduction = Literal["sum", "mean"]


@register_weighting("equal")
class EqualWeighting(Weighting):
    """Every task weighted equally: ``sum_i L_i`` (``reduction="sum"``, the default) or
    ``(1/K) sum_i L_i`` (``reduction="mean"``)."""

    name: ClassVar[str] = "equal"
    needs: ClassVar[Needs] = Needs.LOSSES

    def __init__(self, num_tasks: int, reduction: Reduction = "sum") -> None:
        super().__init__(num_tasks)
        if reduction not in ("sum", "mean"):
            raise ValueError(f"EqualWeighting: reduction must be 'sum' or 'mean' (got {reduction!r}).")
        self.reduction: Reduction = reduction

    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        value = 1.0 if self.reduction == "sum" else 1.0 / self.num_tasks
        weights = losses.detach().new_full((self.num_tasks,), value)
        total = losses.sum() if self.reduction == "sum" else losses.mean()
        return total, weights

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reduction={self.reduction!r}"


register_weighting("mean", functools.partial(EqualWeighting, reduction="mean"))
