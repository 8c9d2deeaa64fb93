"""Uncertainty weighting: Kendall, Gal & Cipolla 2018, "Multi-Task Learning Using Uncertainty
to Weigh Losses for Scene Geometry and Semantics" (CVPR), eq. 7 in the log-variance
parametrisation s_i = log sigma_i^2 (learned jointly with the model):

    L(theta, s) = sum_i [ L_i(theta) / (2 exp(s_i)) + s_i / 2 ]
                = sum_i [ 0.5 exp(-s_i) L_i(theta) + 0.5 s_i ],     s_i initialised to 0.

This is the form LibMTL's ``UW`` and Nash-MTL's ``"uw"`` baseline use for every task (the
paper's Gaussian-likelihood form 1/(2 sigma^2) L + log sigma, applied to classification tasks
too, where the paper has 1/sigma^2 L + log sigma). The weights reported are the coefficients of
the losses, w_i = 0.5 exp(-s_i).

Closed-form optimum over s for fixed losses L_i > 0: d/ds_i = -0.5 exp(-s_i) L_i + 0.5 = 0
gives exp(s_i) = L_i, i.e.

    s_i* = log L_i,   w_i* = 1 / (2 L_i),   L(theta, s*) = sum_i 0.5 (1 + log L_i(theta)),

a minimum since the second derivative 0.5 exp(-s_i) L_i is > 0. So when the s_i track their
optimum, uncertainty weighting follows the scale-invariant objective 0.5 sum_i log L_i. For a
loss that can be negative the objective is unbounded below in s_i: use losses >= 0.

The s_i are ``nn.Parameter``s: add ``weighting.parameters()`` to the optimiser (the multi-task
trainer does). Weight decay on them pulls s_i towards 0, away from log L_i.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from .base import Needs, Weighting
from .registry import register_weighting

__all__ = ["UncertaintyWeighting"]


@register_weighting("uw")
class UncertaintyWeighting(Weighting):
    """Learned log-variances ``log_vars`` [K]: objective ``sum_i 0.5 exp(-s_i) L_i + 0.5 s_i``."""

    name: ClassVar[str] = "uw"
    needs: ClassVar[Needs] = Needs.LOSSES

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)
        self.log_vars = nn.Parameter(torch.zeros(num_tasks))

    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        s = self.log_vars.to(dtype=losses.dtype)
        coefficients = 0.5 * torch.exp(-s)
        total = (coefficients * losses + 0.5 * s).sum()
        return total, coefficients.detach()
