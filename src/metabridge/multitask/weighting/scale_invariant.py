"""Scale-invariant loss: the sum of log-losses,

    L(theta) = sum_i log(L_i(theta) + eps),

so that multiplying a task's loss by a constant (a change of units) shifts the objective by a
constant and leaves the update unchanged. The gradient is

    grad L = sum_i grad L_i / (L_i + eps),

i.e. linear scalarisation with the weights w_i = 1 / (L_i + eps), which are the weights this
method reports. (Listed as the "scale-invariant" baseline in Navon et al. 2022, "Multi-Task
Learning as a Bargaining Game" (Nash-MTL), and in Liu et al. 2023, FAMO; FAMO's update is the
same direction with adaptive task weights.)

The log needs positive losses: losses must be > 0 (cross-entropy and MSE are > 0 unless fitted
exactly); ``eps > 0`` makes a zero loss safe.
"""

from __future__ import annotations

import math
from typing import ClassVar

from torch import Tensor

from .base import Needs, Weighting
from .registry import register_weighting

__all__ = ["ScaleInvariantWeighting"]


@register_weighting("scale_invariant")
class ScaleInvariantWeighting(Weighting):
    """``sum_i log(L_i + eps)`` (weights reported: ``1 / (L_i + eps)``)."""

    name: ClassVar[str] = "scale_invariant"
    needs: ClassVar[Needs] = Needs.LOSSES

    def __init__(self, num_tasks: int, eps: float = 0.0) -> None:
        super().__init__(num_tasks)
        if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
            raise ValueError(f"ScaleInvariantWeighting: eps must be a finite number >= 0 (got {eps!r}).")
        self.eps = float(eps)

    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        shifted = losses + self.eps
        if not bool((shifted.detach() > 0).all()):
            raise ValueError(
                f"scale_invariant takes log(L_i + eps) and needs L_i + eps > 0 (losses "
                f"{losses.detach().tolist()}, eps={self.eps}); pass eps > 0 (e.g. eps=1e-8) for losses "
                "that can reach 0, or use another method for losses that can be negative."
            )
        return shifted.log().sum(), shifted.detach().reciprocal()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, eps={self.eps}"
