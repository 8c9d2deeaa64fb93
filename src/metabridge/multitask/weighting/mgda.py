"""MGDA and MGDA-UB: Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization",
NeurIPS 2018.

The multiple-gradient descent algorithm (Désidéri 2012) steps along the min-norm element of
the convex hull of the task gradients,

    alpha* = argmin_{alpha in Delta_K} || sum_i alpha_i g_i ||^2,      d = sum_i alpha*_i g_i,

which is a descent direction for every task at once (or zero at a Pareto-stationary point).
The solver is :mod:`.min_norm` on the K x K Gram matrix (exact for K = 2, Frank-Wolfe for K > 2).

* ``"mgda"`` reads the gradients w.r.t. the shared parameters ([K, P]).
* ``"mgda_ub"`` (the paper's "upper bound", Sec. 3.3) reads the gradients w.r.t. the shared
  features z ([K, B*D], a backward through the heads only) and back-propagates
  sum_i alpha_i dL_i/dz through the encoder.

Gradient normalisation (the paper's code, ``normalization_type``): each g_i is divided by
n_i before the solve, with n_i = 1 (``"none"``), ||g_i|| (``"l2"``), L_i (``"loss"``) or
L_i ||g_i|| (``"loss+"``). The direction is d = sum_i alpha_i g_i / n_i, so the weights on
the raw losses (returned, and used for the heads) are alpha_i / n_i: then sum_i w_i g_i = d
exactly. (The paper's code instead weights the raw losses by alpha_i; with ``"none"`` the
two agree.)
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor

from .base import Needs, Weighting
from .min_norm import check_grads, gram_matrix, min_norm_weights
from .registry import register_weighting

__all__ = ["MGDA", "MGDAUB"]

Normalization = Literal["none", "l2", "loss", "loss+"]
_NORMALIZATIONS = ("none", "l2", "loss", "loss+")


@register_weighting("mgda")
class MGDA(Weighting):
    """MGDA on the gradients w.r.t. the shared parameters (Sener & Koltun 2018).

    Args:
        num_tasks: K.
        normalization: ``"none"`` (default), ``"l2"``, ``"loss"`` or ``"loss+"`` (see the module).
        max_iter: Frank-Wolfe iterations at most (K > 2).
        tol: Frank-Wolfe duality-gap tolerance, relative to the largest squared gradient norm.
        eps: floor of the normalisers n_i (a zero gradient or loss is not divided by zero).
    """

    name: ClassVar[str] = "mgda"
    needs: ClassVar[Needs] = Needs.PARAM_GRADS

    def __init__(
        self,
        num_tasks: int,
        normalization: Normalization = "none",
        max_iter: int = 1000,
        tol: float = 1e-10,
        eps: float = 1e-12,
    ) -> None:
        super().__init__(num_tasks)
        if normalization not in _NORMALIZATIONS:
            raise ValueError(
                f"{type(self).__name__}: normalization must be one of {_NORMALIZATIONS} (got {normalization!r})."
            )
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"{type(self).__name__}: max_iter must be a positive integer (got {max_iter!r}).")
        if not (isinstance(tol, (int, float)) and tol >= 0):
            raise ValueError(f"{type(self).__name__}: tol must be a number >= 0 (got {tol!r}).")
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise ValueError(f"{type(self).__name__}: eps must be a number > 0 (got {eps!r}).")
        self.normalization = normalization
        self.max_iter = max_iter
        self.tol = float(tol)
        self.eps = float(eps)

    def normalizers(self, grads: Tensor, losses: Tensor) -> Tensor:
        """n_i [K] (in the gradients' dtype) for the chosen normalisation."""
        if self.normalization == "none":
            return torch.ones(grads.shape[0], dtype=grads.dtype, device=grads.device)
        if self.normalization in ("loss", "loss+") and not bool((losses > 0).all()):
            raise ValueError(
                f"{type(self).__name__}: normalization={self.normalization!r} divides by the losses, "
                f"which must be positive (got {losses.tolist()}); use 'l2' or 'none'."
            )
        norms = grads.norm(dim=1)
        if self.normalization == "l2":
            n = norms
        elif self.normalization == "loss":
            n = losses.to(grads.dtype)
        else:
            n = losses.to(grads.dtype) * norms
        return n.clamp_min(self.eps)

    def combine(self, grads: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
        check_grads(grads, self.num_tasks, type(self).__name__)
        n = self.normalizers(grads, losses.to(grads.device))
        scaled = grads / n[:, None]
        alpha = min_norm_weights(gram_matrix(scaled), max_iter=self.max_iter, tol=self.tol).to(grads.dtype)
        weights = alpha / n
        return weights @ grads, weights

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, normalization={self.normalization!r}"


@register_weighting("mgda_ub")
class MGDAUB(MGDA):
    """MGDA-UB: the same solver on the gradients w.r.t. the shared features ([K, B*D]); the
    combined feature gradient is back-propagated through the encoder (Sener & Koltun 2018, Sec. 3.3)."""

    name: ClassVar[str] = "mgda_ub"
    needs: ClassVar[Needs] = Needs.FEATURE_GRADS
