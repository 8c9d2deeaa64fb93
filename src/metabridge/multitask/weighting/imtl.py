"""IMTL: Liu, Li, Kuang, Xue, Chen, Yang, Liao & Zhang, "Towards Impartial Multi-task
Learning", ICLR 2021 (Alg. 1).

* ``"imtl_g"`` (gradient balance, Sec. 3.2): find the aggregated gradient g = sum_i alpha_i g_i,
  sum_i alpha_i = 1, whose projections onto every unit task gradient u_i = g_i / ||g_i|| are
  equal (g . u_1 = g . u_i for all i). With D = [g_1 - g_i]_{i=2..K} and
  U = [u_1 - u_i]_{i=2..K} ([K-1, P] each),

      alpha_{2..K} = g_1 U^T (D U^T)^{-1},      alpha_1 = 1 - sum_{i>=2} alpha_i.

  Every inner product is read from the Gram matrix M = G G^T: g_a . u_b = M_ab / sqrt(M_bb),
  so the (K-1) x (K-1) system is formed in O(K^2) after M and solved with
  :func:`torch.linalg.solve`. A singular system (two tasks with parallel gradients, a zero
  gradient) raises :class:`IMTLSolveError` (``on_singular="raise"``, the default), or with
  ``on_singular="lstsq"`` is solved in the minimum-norm least-squares sense (the
  pseudo-inverse, :func:`torch.linalg.pinv`, which unlike ``torch.linalg.lstsq`` on CUDA
  accepts rank-deficient systems) with a warning at every such step. "Singular" means a
  reciprocal condition number below 10 K eps of the gradients' dtype. The heads get their own losses (weights 1); the
  alphas of the last call are in :attr:`IMTLG.last_alpha`.
* ``"imtl_l"`` (loss balance, Sec. 3.1): learnable s_i (init 0), each loss replaced by
  e^{s_i} L_i - s_i; a loss-only method (one backward of sum_i e^{s_i} L_i - s_i), whose
  weights e^{s_i} reach the same scale-free balance (e^{s_i} L_i = 1 at the optimum of s_i).
  The caller adds ``weighting.parameters()`` (s) to its optimiser.
* ``"imtl"`` (hybrid, Alg. 1): the gradients of the scaled losses e^{s_i} L_i, i.e.
  e^{s_i} g_i (s detached), go through IMTL-G; the shared parameters get sum_i alpha_i e^{s_i} g_i,
  the heads the scaled losses (weights e^{s_i}), and inside ``combine`` the s-objective
  sum_i (e^{s_i} L_i.detach() - s_i) is back-propagated into s (``s.grad``), which the caller's
  optimiser steps.

The paper computes IMTL-G on the gradients w.r.t. the shared features; here they are the
gradients w.r.t. the shared parameters (``Needs.PARAM_GRADS``), as in LibMTL's default.
"""

from __future__ import annotations

import warnings
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from .base import Needs, Weighting
from .min_norm import check_grads, gram_matrix
from .registry import register_weighting

__all__ = ["IMTL", "IMTLG", "IMTLL", "IMTLSolveError", "imtl_g_alpha"]

OnSingular = Literal["raise", "lstsq"]


class IMTLSolveError(RuntimeError):
    """IMTL-G's linear system (D U^T) is singular (parallel or zero task gradients)."""


def imtl_g_alpha(gram: Tensor, on_singular: OnSingular = "raise", rcond: float | None = None) -> Tensor:
    """IMTL-G's alpha [K] (sum 1) from the Gram matrix M = G G^T [K, K].

    Args:
        gram: M.
        on_singular: ``"raise"`` (:class:`IMTLSolveError`) or ``"lstsq"`` (least squares, with a warning).
        rcond: the system counts as singular when its reciprocal condition number is below this
            (default: 10 K times the machine epsilon of ``gram``'s dtype; the methods pass the
            epsilon of the gradients' dtype, since M is formed in it).
    """
    if on_singular not in ("raise", "lstsq"):
        raise ValueError(f"IMTL-G: on_singular must be 'raise' or 'lstsq' (got {on_singular!r}).")
    k = gram.shape[0]
    if k == 1:
        return torch.ones(1, dtype=gram.dtype, device=gram.device)
    sq = gram.diagonal()
    if not bool((sq > 0).all()):
        zero = (sq <= 0).nonzero().flatten().tolist()
        raise IMTLSolveError(f"IMTL-G: the gradient of task(s) {zero} is zero, so its unit vector u_i is undefined.")
    n = sq.sqrt()
    nu = gram / n[None, :]  # nu[a, b] = g_a . u_b
    # (D U^T)[i, j] = (g_1 - g_i) . (u_1 - u_j) for i, j >= 2; (g_1 U^T)[j] = g_1 . (u_1 - u_j)
    a = nu[0, 0] - nu[0:1, 1:] - nu[1:, 0:1] + nu[1:, 1:]
    rhs = nu[0, 0] - nu[0, 1:]
    # alpha_{2..K} (row) = rhs^T a^{-1}  <=>  a^T alpha = rhs
    if rcond is None:
        rcond = 10 * k * torch.finfo(gram.dtype).eps
    svals = torch.linalg.svdvals(a)
    singular = bool(svals.min() <= rcond * svals.max()) or not bool(svals.max() > 0)
    if singular:
        if on_singular == "raise":
            raise IMTLSolveError(
                "IMTL-G: the system (D U^T) alpha = g_1 U^T is singular (two tasks have parallel "
                "gradients, or the unit gradients are affinely dependent); pass on_singular='lstsq' "
                "to solve it in the least-squares sense instead."
            )
        warnings.warn(
            "IMTL-G: singular system (parallel task gradients); alpha solved by least squares (torch.linalg.pinv).",
            RuntimeWarning,
            stacklevel=3,
        )
        rest = torch.linalg.pinv(a.T, rtol=rcond) @ rhs  # minimum-norm least squares, any device
    else:
        rest = torch.linalg.solve(a.T, rhs)
    return torch.cat([(1 - rest.sum())[None], rest])


def _check_on_singular(who: str, on_singular: str) -> None:
    if on_singular not in ("raise", "lstsq"):
        raise ValueError(f"{who}: on_singular must be 'raise' or 'lstsq' (got {on_singular!r}).")


@register_weighting("imtl_g")
class IMTLG(Weighting):
    """IMTL-G: the aggregated gradient with equal projections onto every task's unit gradient.

    Args:
        num_tasks: K.
        on_singular: ``"raise"`` (default) or ``"lstsq"`` (least squares with a warning).
    """

    name: ClassVar[str] = "imtl_g"
    needs: ClassVar[Needs] = Needs.PARAM_GRADS

    def __init__(self, num_tasks: int, on_singular: OnSingular = "raise") -> None:
        super().__init__(num_tasks)
        _check_on_singular(type(self).__name__, on_singular)
        self.on_singular = on_singular
        self.last_alpha: Tensor | None = None

    def _alpha(self, grads: Tensor) -> Tensor:
        rcond = 10 * self.num_tasks * torch.finfo(grads.dtype).eps
        alpha = imtl_g_alpha(gram_matrix(grads), self.on_singular, rcond=rcond).to(grads.dtype)
        self.last_alpha = alpha
        return alpha

    def combine(self, grads: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
        check_grads(grads, self.num_tasks, type(self).__name__)
        alpha = self._alpha(grads)
        return alpha @ grads, torch.ones(self.num_tasks, dtype=grads.dtype, device=grads.device)


@register_weighting("imtl_l")
class IMTLL(Weighting):
    """IMTL-L: learnable loss scales, objective sum_i e^{s_i} L_i - s_i (s init 0)."""

    name: ClassVar[str] = "imtl_l"
    needs: ClassVar[Needs] = Needs.LOSSES

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)
        self.s = nn.Parameter(torch.zeros(num_tasks))

    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        if losses.dim() != 1 or losses.shape[0] != self.num_tasks:
            raise ValueError(
                f"IMTLL: expected the {self.num_tasks} losses as a [{self.num_tasks}] tensor "
                f"(got shape {tuple(losses.shape)})."
            )
        s = self.s.to(losses.dtype)
        scale = s.exp()
        return (scale * losses - s).sum(), scale.detach()


@register_weighting("imtl")
class IMTL(IMTLG):
    """IMTL (hybrid): IMTL-G on the gradients of the e^{s}-scaled losses; s is learned by the
    caller's optimiser from the gradient that ``combine`` accumulates into ``s.grad``."""

    name: ClassVar[str] = "imtl"
    needs: ClassVar[Needs] = Needs.PARAM_GRADS

    def __init__(self, num_tasks: int, on_singular: OnSingular = "raise") -> None:
        super().__init__(num_tasks, on_singular)
        self.s = nn.Parameter(torch.zeros(num_tasks))

    def combine(self, grads: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
        check_grads(grads, self.num_tasks, type(self).__name__)
        if losses.dim() != 1 or losses.shape[0] != self.num_tasks:
            raise ValueError(
                f"IMTL: expected the {self.num_tasks} losses as a [{self.num_tasks}] tensor "
                f"(got shape {tuple(losses.shape)})."
            )
        scale = self.s.detach().exp().to(device=grads.device, dtype=grads.dtype)
        alpha = self._alpha(scale[:, None] * grads)
        with torch.enable_grad():
            s_objective = (self.s.exp() * losses.detach().to(self.s.device, self.s.dtype) - self.s).sum()
            torch.autograd.backward(s_objective, inputs=[self.s])
        return (alpha * scale) @ grads, scale
