"""Differentiable ridge-regression heads, batched over tasks.

R2D2: Bertinetto, Henriques, Torr & Vedaldi, "Meta-learning with differentiable
closed-form solvers", ICLR 2019. For support features X [S, D] and one-hot targets
Y [S, N] the base learner is ridge regression (Sec. 3.2, Eq. 3-4):

    W = argmin_W ||X W - Y||^2 + lambda ||W||^2
      = (X^T X + lambda I_D)^{-1} X^T Y                       (D x D system)
      = X^T (X X^T + lambda I_S)^{-1} Y                        (Woodbury, S x S system)

The Woodbury identity makes the cost cubic in the number of shots, not in the feature
dimension, which is the point of R2D2 (S << D in few-shot learning). Query scores are
passed through a learnt scale and offset (Sec. 3.2, "adjust" layer):

    logits = alpha * (X_query W) + beta

Every operation is a batched dense linear-algebra op (Cholesky factorisation of an SPD
matrix), so the result is differentiable with respect to the features, lambda, alpha and
beta by ordinary autograd.

``ridge_fit`` is the plain multi-output ridge regression (targets ``[T, S, d_y]``,
optionally with an unregularised bias fitted by centring), used e.g. by MTL's head refit
for regression tasks (Wang et al. 2021, Sec. 2).
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import assert_on_device, check_features, check_support, reads_are_free

__all__ = ["ridge_fit", "ridge_predict", "r2d2_logits"]


def _as_lambda(lam: float | Tensor, t: int, ref: Tensor, head: str) -> Tensor:
    """Broadcast lambda (float, scalar tensor or per-task ``[T]``) to ``[T, 1, 1]``."""
    if isinstance(lam, numbers.Real):  # a number: checked on the host, filled on the device (no copy)
        if lam <= 0:
            raise ValueError(f"{head}: lam must be > 0 (ridge needs a positive regulariser), got {lam}.")
        return torch.full((t, 1, 1), float(lam), dtype=ref.dtype, device=ref.device)
    lam_t = torch.as_tensor(lam, dtype=ref.dtype, device=ref.device)
    if lam_t.dim() == 0:
        lam_t = lam_t.expand(t)
    if lam_t.shape != (t,):
        raise ValueError(
            f"{head}: lam must be a float, a scalar tensor or a [T]={t} tensor, got shape {tuple(lam_t.shape)}."
        )
    if not lam_t.requires_grad:  # a learned lambda (log-parametrised in R2D2) is positive by construction
        if reads_are_free(lam_t):  # a host tensor: check exactly
            if bool((lam_t <= 0).any()):
                raise ValueError(f"{head}: lam must be > 0 (ridge needs a positive regulariser), got {lam}.")
        else:  # an accelerator tensor: no host read (see heads/_checks.py)
            assert_on_device((lam_t > 0).all(), f"{head}: lam must be > 0 (ridge needs a positive regulariser)")
    return lam_t.view(t, 1, 1)


def _solve_ridge(x: Tensor, y: Tensor, lam: Tensor, method: str, head: str) -> Tensor:
    """Solve min_W ||x W - y||^2 + lam ||W||^2 for each task; x [T,S,D], y [T,S,K] -> W [T,D,K]."""
    t, s, d = x.shape
    if method == "auto":
        method = "woodbury" if s < d else "primal"
    if method == "woodbury":
        # W = X^T (X X^T + lam I_S)^{-1} Y
        gram = torch.bmm(x, x.transpose(1, 2))
        eye = torch.eye(s, dtype=x.dtype, device=x.device)
        chol = torch.linalg.cholesky(gram + lam * eye)
        return torch.bmm(x.transpose(1, 2), torch.cholesky_solve(y, chol))
    if method == "primal":
        # W = (X^T X + lam I_D)^{-1} X^T Y
        cov = torch.bmm(x.transpose(1, 2), x)
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        chol = torch.linalg.cholesky(cov + lam * eye)
        return torch.cholesky_solve(torch.bmm(x.transpose(1, 2), y), chol)
    raise ValueError(f"{head}: method must be 'auto', 'woodbury' or 'primal', got {method!r}.")


def ridge_fit(
    support: Tensor, targets: Tensor, lam: float | Tensor = 1.0, *, fit_bias: bool = False, method: str = "auto"
) -> tuple[Tensor, Tensor | None]:
    """Batched multi-output ridge regression (Bertinetto et al. 2019, Eq. 3-4).

    Solves, for every task t independently,
    ``min_{W,b} ||X_t W + 1 b^T - Y_t||_F^2 + lambda_t ||W||_F^2`` with the bias ``b``
    unregularised (``fit_bias=True``; solved exactly by centring X and Y on their support
    means, then ``b = mean(Y) - mean(X) W``) or absent (``fit_bias=False``).

    Args:
        support: ``[T, S, D]`` features.
        targets: ``[T, S, d_y]`` real targets (or ``[T, S]``, treated as ``d_y = 1``).
        lam: ridge strength lambda > 0: float, scalar tensor or ``[T]`` tensor; may require
            grad (R2D2 learns it).
        fit_bias: fit an unregularised intercept.
        method: ``"woodbury"`` (S x S system, cheap when S < D), ``"primal"`` (D x D system)
            or ``"auto"`` (the smaller of the two).

    Returns:
        ``(W, b)``: ``W`` ``[T, D, d_y]`` and ``b`` ``[T, d_y]`` (``None`` without bias).
    """
    head = "ridge_fit"
    check_features("support", support, head)
    t, s, _ = support.shape
    if s == 0:
        raise ValueError(f"{head}: the support set is empty (S=0); ridge regression needs at least one example.")
    if not isinstance(targets, Tensor) or not targets.is_floating_point():
        raise TypeError(
            f"{head}: targets must be a floating tensor [T, S, d_y]; for class labels use r2d2_logits "
            "(or one-hot them with F.one_hot(labels, n_way).to(support.dtype))."
        )
    y = targets.unsqueeze(-1) if targets.dim() == 2 else targets
    if y.dim() != 3 or y.shape[:2] != (t, s):
        raise ValueError(
            f"{head}: targets have shape {tuple(targets.shape)} but support has {tuple(support.shape)}; "
            f"targets must be [T, S, d_y] = [{t}, {s}, d_y]."
        )
    y = y.to(support.dtype)
    lam_t = _as_lambda(lam, t, support, head)
    if fit_bias:
        x_mean = support.mean(dim=1, keepdim=True)
        y_mean = y.mean(dim=1, keepdim=True)
        w = _solve_ridge(support - x_mean, y - y_mean, lam_t, method, head)
        b = (y_mean - torch.bmm(x_mean, w)).squeeze(1)
        return w, b
    return _solve_ridge(support, y, lam_t, method, head), None


def ridge_predict(query: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    """``query @ W (+ b)``: ``[T, Q, D] x [T, D, d_y] -> [T, Q, d_y]``."""
    out = torch.bmm(query, w)
    return out if b is None else out + b.unsqueeze(1)


def r2d2_logits(
    support: Tensor,
    support_labels: Tensor,
    query: Tensor,
    n_way: int,
    lam: float | Tensor = 1.0,
    *,
    scale: float | Tensor = 1.0,
    bias: float | Tensor = 0.0,
    fit_bias: bool = False,
    method: str = "auto",
) -> Tensor:
    """R2D2's ridge-regression classification head (Bertinetto et al. 2019, Eq. 3-5).

    Regresses one-hot support targets, ``W = X^T (X X^T + lambda I)^{-1} Y`` (Woodbury form
    when S < D), and returns ``scale * (X_query W) + bias``.

    Args:
        support: ``[T, S, D]`` support features.
        support_labels: ``[T, S]`` int64 labels in ``0..n_way-1``.
        query: ``[T, Q, D]`` query features.
        n_way: classes per task.
        lam: ridge strength (float, scalar or ``[T]`` tensor, may be learnable).
        scale, bias: R2D2's "adjust" scalars alpha and beta (floats or learnable scalar
            tensors owned by the caller; R2D2 learns both).
        fit_bias: also fit an unregularised intercept per class (not in R2D2; off by default).
        method: see :func:`ridge_fit`.

    Returns:
        ``[T, Q, n_way]`` logits, differentiable w.r.t. features, lam, scale and bias.
    """
    check_support(support, support_labels, n_way, "r2d2_logits", query)
    y = F.one_hot(support_labels, n_way).to(support.dtype)
    w, b = ridge_fit(support, y, lam, fit_bias=fit_bias, method=method)
    return scale * ridge_predict(query, w, b) + bias
