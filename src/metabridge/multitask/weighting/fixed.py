"""Fixed weighting: linear scalarisation with user-given constant weights (CS330 lecture 2,
"min_theta sum_i w_i L_i(theta)" with the w_i chosen by hand, e.g. by a grid search or by
priority):

    L(theta) = sum_i w_i L_i(theta),   w_i >= 0 fixed, not all zero.

The weights are used as given (not normalised), so ``weights=[1, 1]`` is ``"equal"``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from .base import Needs, Weighting
from .registry import register_weighting

__all__ = ["FixedWeighting"]


@register_weighting("fixed")
class FixedWeighting(Weighting):
    """Constant weights ``weights`` (one non-negative number per task, not all zero)."""

    name: ClassVar[str] = "fixed"
    needs: ClassVar[Needs] = Needs.LOSSES

    def __init__(self, num_tasks: int, weights: Sequence[float] | None = None) -> None:
        super().__init__(num_tasks)
        if weights is None:
            raise ValueError(
                f"FixedWeighting needs weights=[w_1, ..., w_{num_tasks}] (one per task); "
                "for unit weights use the 'equal' method."
            )
        try:
            if isinstance(weights, (str, bytes)):
                raise TypeError
            values = [float(w) for w in weights]
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"FixedWeighting: weights must be a sequence of {num_tasks} numbers, one per task (got {weights!r})."
            ) from err
        if len(values) != num_tasks:
            raise ValueError(
                f"FixedWeighting: got {len(values)} weights for {num_tasks} tasks; pass exactly one weight per task."
            )
        if not all(math.isfinite(w) and w >= 0 for w in values):
            raise ValueError(f"FixedWeighting: weights must be finite and non-negative (got {values}).")
        if not any(w > 0 for w in values):
            raise ValueError(
                "FixedWeighting: the weights are all zero, so nothing would be trained; make at least "
                "one weight positive."
            )
        self.weights: tuple[float, ...] = tuple(values)
        self._cache: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def weight_tensor(self, like: Tensor) -> Tensor:
        """The weights as a tensor on ``like``'s device and dtype (made once per device and dtype)."""
        key = (like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = torch.tensor(self.weights, device=like.device, dtype=like.dtype)
        return self._cache[key]

    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        weights = self.weight_tensor(losses)
        return (weights * losses).sum(), weights.clone()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weights={list(self.weights)}"
