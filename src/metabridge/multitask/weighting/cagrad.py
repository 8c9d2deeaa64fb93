"""CAGrad: Liu, Liu, Jin, Stone & Liu, "Conflict-Averse Gradient Descent for Multi-task
Learning", NeurIPS 2021 (Alg. 1).

CAGrad maximises the worst task's improvement in a ball around the average gradient
g_0 = (1/K) sum_i g_i:

    max_d min_i g_i . d   s.t.  ||d - g_0|| <= c ||g_0||.

With phi = c^2 ||g_0||^2 its dual is, over the simplex,

    w* = argmin_{w in Delta_K}  F(w) = g_w . g_0 + sqrt(phi) ||g_w||,     g_w = sum_i w_i g_i,

and d* = g_0 + (sqrt(phi) / ||g_w*||) g_w*. The update is d* / (1 + c^2) (``rescale=1``, the
official code's default), d* / (1 + c) (``rescale=2``) or d* (``rescale=0``).

F only reads the Gram matrix M = G G^T: g_w . g_0 = w^T M 1/K and ||g_w||^2 = w^T M w. It is
convex in w; it is minimised by projected gradient descent on the simplex (exact Euclidean
projection, backtracking on the quadratic upper bound, deterministic) on M / mean_i(M_ii), to
``tol`` or ``max_iter`` iterations. (The official code instead takes 20 steps of SGD on a softmax parametrisation;
where those have not converged the two differ slightly.)

The effective weights on the raw gradients, returned and used for the heads, are
(1/K + lambda w*_i) / (1 + c^2) with lambda = sqrt(phi) / ||g_w*|| (for ``rescale=1``), so
that sum_i weights_i g_i is the direction. c = 0 gives exactly the mean gradient (equal
weights 1/K; no solve).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor

from .base import Needs, Weighting
from .min_norm import check_grads, gram_matrix
from .registry import register_weighting

__all__ = ["CAGrad", "cagrad_dual_weights", "project_to_simplex"]


def project_to_simplex(v: Tensor) -> Tensor:
    """Euclidean projection of a vector onto the probability simplex (sort-based, exact)."""
    k = v.shape[0]
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, dim=0) - 1
    idx = torch.arange(1, k + 1, dtype=v.dtype, device=v.device)
    cond = u - css / idx > 0
    rho = torch.nonzero(cond).max()  # at least index 0 satisfies cond
    theta = css[rho] / (rho + 1).to(v.dtype)
    return (v - theta).clamp_min(0.0)


def _dual(gram: Tensor, b: Tensor, r: Tensor, w: Tensor, eps: float) -> Tensor:
    return w @ b + r * torch.sqrt(w @ gram @ w + eps)


def cagrad_dual_weights(gram: Tensor, c: float, max_iter: int = 200, tol: float = 1e-10) -> Tensor:
    """w* = argmin over the simplex of w^T M g_0 + c ||g_0|| ||G^T w|| (M = G G^T [K, K]), by
    projected gradient with backtracking from the uniform point (M is normalised by its mean
    diagonal first; the minimiser does not change)."""
    k = gram.shape[0]
    dtype, device = gram.dtype, gram.device
    w = torch.full((k,), 1.0 / k, dtype=dtype, device=device)
    if k == 1:
        return w
    scale = gram.diagonal().mean()
    if not bool(scale > 0):
        return w  # every gradient is zero: every w is optimal
    m = gram / scale
    b = m.mean(dim=1)  # M g_0 in coefficient space: (G g_0)_i
    r = c * torch.sqrt((b.mean()).clamp_min(0.0))  # sqrt(phi) = c ||g_0||; ||g_0||^2 = 1^T M 1 / K^2
    eps = 1e-12
    f = _dual(m, b, r, w, eps)
    step = torch.ones((), dtype=dtype, device=device)
    for _ in range(max_iter):
        grad = b + r * (m @ w) / torch.sqrt(w @ m @ w + eps)
        accepted = False
        for _ in range(60):
            w_new = project_to_simplex(w - step * grad)
            f_new = _dual(m, b, r, w_new, eps)
            dw = w_new - w
            # sufficient decrease for projected gradient (Beck & Teboulle's quadratic upper bound)
            if bool(f_new <= f + grad @ dw + (dw @ dw) / (2 * step)):
                accepted = True
                break
            step = step * 0.5
        if not accepted:
            break
        change = (w_new - w).abs().max()
        w, f = w_new, f_new
        step = step * 2.0  # let the step grow back
        if bool(change <= tol):
            break
    return w


@register_weighting("cagrad")
class CAGrad(Weighting):
    """Conflict-averse gradient descent (Liu et al. 2021).

    Args:
        num_tasks: K.
        c: radius of the ball around the mean gradient, relative to ||g_0|| (default 0.5; >= 0).
        rescale: 0 (d), 1 (d / (1 + c^2), default, as the official code) or 2 (d / (1 + c)).
        max_iter: iterations of the dual solver at most.
        tol: the dual solver stops when no weight moves by more than ``tol``.
    """

    name: ClassVar[str] = "cagrad"
    needs: ClassVar[Needs] = Needs.PARAM_GRADS

    def __init__(
        self, num_tasks: int, c: float = 0.5, rescale: Literal[0, 1, 2] = 1, max_iter: int = 200, tol: float = 1e-10
    ) -> None:
        super().__init__(num_tasks)
        if not (isinstance(c, (int, float)) and not isinstance(c, bool) and c >= 0 and c == c and c != float("inf")):
            raise ValueError(f"CAGrad: c must be a finite number >= 0 (got {c!r}).")
        if rescale not in (0, 1, 2) or isinstance(rescale, bool):
            raise ValueError(f"CAGrad: rescale must be 0, 1 or 2 (got {rescale!r}).")
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"CAGrad: max_iter must be a positive integer (got {max_iter!r}).")
        if not (isinstance(tol, (int, float)) and tol >= 0):
            raise ValueError(f"CAGrad: tol must be a number >= 0 (got {tol!r}).")
        self.c = float(c)
        self.rescale = rescale
        self.max_iter = max_iter
        self.tol = float(tol)

    def combine(self, grads: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
        check_grads(grads, self.num_tasks, "CAGrad")
        k = self.num_tasks
        if self.c == 0.0:
            return grads.mean(dim=0), torch.full((k,), 1.0 / k, dtype=grads.dtype, device=grads.device)
        gram = gram_matrix(grads)
        w = cagrad_dual_weights(gram, self.c, max_iter=self.max_iter, tol=self.tol)
        g0_sq = gram.mean()  # ||g_0||^2 = 1^T M 1 / K^2
        gw_norm = torch.sqrt((w @ gram @ w).clamp_min(0.0))
        r = self.c * torch.sqrt(g0_sq.clamp_min(0.0))
        tiny = torch.finfo(gram.dtype).tiny
        lam = torch.where(gw_norm > tiny**0.5, r / gw_norm.clamp_min(tiny**0.5), torch.zeros_like(gw_norm))
        weights = 1.0 / k + lam * w
        if self.rescale == 1:
            weights = weights / (1 + self.c**2)
        elif self.rescale == 2:
            weights = weights / (1 + self.c)
        weights = weights.to(grads.dtype)
        return weights @ grads, weights

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, c={self.c}, rescale={self.rescale}"
