"""Batched multinomial L2-regularised logistic regression (MTL's test-time head).

Wang, Zhao & Li, "Bridging Multi-Task Learning and Meta-Learning: Towards Efficient
Training and Effective Adaptation", ICML 2021, Sec. 5: at test time the head of the
multi-task-trained network is refitted on the L2-normalised frozen support features by
L2-regularised logistic regression with C = 3 (scikit-learn's ``LogisticRegression``).

This module fits the same model for a whole meta-batch at once. Objective per task, in
scikit-learn's convention (W [D, N], b [N], softmax cross-entropy):

    min_{W, b}  0.5 ||W||_F^2  (+ 0.5 ||b||^2 if penalize_bias)
                + C * sum_{i=1..S} [ -log softmax(x_i W + b)_{y_i} ]                (1)

Solver. By the stationarity condition of (1), W = -C X^T (P - Y) lies in the row span
of the support features X. With a thin QR factorisation X^T = Q R (Q [D, r],
r = min(S, D)), W = Q V and ||W|| = ||V||, so (1) is exactly the same problem in the
r-dimensional features Z = X Q = R^T. That reduced problem, with at most N (r + 1)
unknowns (130 for 5-way 5-shot, whatever D is), is solved by batched Newton's method
with a per-task backtracking (Armijo) line search:

    H = blockdiag(I_r, eps I or I) (x) I_N + C sum_i z_i z_i^T (x) (diag(p_i) - p_i p_i^T)
    theta <- theta - t H^{-1} grad                                                     (2)

Newton converges quadratically, so a handful of steps reach float64 precision; the
Hessian build is two batched matmuls and a batched Cholesky, with no loop over tasks.
The unpenalised intercept leaves the softmax shift direction (0, 1_N) flat; a tiny
ridge ``eps`` on the bias block makes H invertible without moving the solution, because
the gradient is always orthogonal to that direction (so the intercept stays sum-zero,
like scikit-learn's lbfgs from a zero start).

The fit is not differentiable (it runs under ``torch.no_grad``); Wang et al. use it only
at test time.

Host syncs. A task whose gradient meets the tolerance is frozen (its Newton step is set to
zero), so its fit does not depend on the other tasks of its batch nor on how often
convergence is checked. On the host every data-dependent decision is read when it arises,
as cheaply as possible. On an accelerator each Newton iteration reads the host once:
"every task converged?" and "did a Cholesky factorisation fail?" are fetched together, after
the Hessian is factored (on the final iteration that factorisation is discarded), and the
backtracking line search evaluates all its step lengths 1, 1/2, ..., 2^-39 at once (cheap
objective evaluations) and takes each task's first acceptable one, which is the step the
sequential search takes. Results agree with the host path to rounding; extra host reads
happen only in the rare damping of a numerically indefinite Hessian.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_support, reads_are_free

__all__ = ["logistic_fit", "logistic_logits"]

_HEAD = "logistic_fit"


#: Step lengths of the backtracking line search: 1, 1/2, ..., 2^-(_LS_STEPS - 1).
_LS_STEPS = 40


def _objective(z: Tensor, y1h: Tensor, theta: Tensor, reg: Tensor, c: float) -> Tensor:
    """Objective (1) per task: z [T,S,R], y1h [T,S,N], theta [..., T,R,N], reg [R] -> [..., T]
    (leading dims of ``theta``: several candidates per task, as in the line search)."""
    logits = torch.matmul(z, theta)
    ce = -(y1h * torch.log_softmax(logits, dim=-1)).sum(dim=(-2, -1))
    return 0.5 * (reg.view(-1, 1) * theta * theta).sum(dim=(-2, -1)) + c * ce


def _step_lengths(like: Tensor) -> Tensor:
    """``[_LS_STEPS]``: 1, 1/2, ..., 2^-(_LS_STEPS-1), exactly (halving is exact), on ``like``'s
    device, without a host-to-device copy."""
    halves = torch.full((_LS_STEPS,), 0.5, dtype=like.dtype, device=like.device)
    halves[0] = 1.0
    return halves.cumprod(0)


def _line_search(
    z: Tensor,
    y1h: Tensor,
    reg: Tensor,
    c: float,
    theta: Tensor,
    f: Tensor,
    step: Tensor,
    grad: Tensor,
    alphas: Tensor,
    block: int,
) -> tuple[Tensor, Tensor]:
    """Per-task backtracking (Armijo) line search along ``step``: ``(theta, f)`` after it.

    Each task takes the first of alpha = 1, 1/2, ..., 2^-(_LS_STEPS-1) with
    f(theta + alpha step) <= f + 1e-4 alpha slope (or any alpha if slope >= 0), and stays
    where it is if none qualifies. Candidates are evaluated ``block`` at a time; between
    blocks the search stops once every task has accepted, which is a host read: ``block=1``
    (the host) evaluates usually one candidate, ``block=_LS_STEPS`` (accelerators) evaluates
    all at once and reads nothing. Both choose the same alpha (``alphas``: :func:`_step_lengths`)."""
    t = theta.shape[0]
    slope = (grad * step).sum(dim=(1, 2))  # < 0
    rows = torch.arange(t, device=theta.device)
    accepted = torch.zeros(t, dtype=torch.bool, device=theta.device)
    new_theta, new_f = theta, f
    for start in range(0, _LS_STEPS, block):
        k = min(block, _LS_STEPS - start)
        alpha = alphas[start : start + k].view(k, 1)
        cand = theta + alpha.view(k, 1, 1, 1) * step  # [k, T, R, N]
        f_c = _objective(z, y1h, cand, reg, c)  # [k, T]
        ok = (f_c <= f + 1e-4 * alpha * slope) | (slope >= 0) | (alpha < 1e-12)
        first = ok.to(torch.uint8).argmax(dim=0)  # each task's first acceptable candidate here
        take = ok.any(dim=0) & ~accepted
        new_theta = torch.where(take.view(t, 1, 1), cand[first, rows], new_theta)
        new_f = torch.where(take, f_c[first, rows], new_f)
        accepted = accepted | ok.any(dim=0)
        if start + k < _LS_STEPS and bool(accepted.all()):
            break
    return new_theta, new_f


def _reduce_features(x: Tensor, fit_bias: bool, penalize_bias: bool) -> tuple[Tensor | None, Tensor, int, Tensor]:
    """The problem on r = min(S, D) features (module docstring): ``(Q or None, Z, r, reg)``, ``Z``
    ``[T, S, r (+1)]`` with the bias column appended when ``fit_bias``, ``reg`` the penalty weight
    of each coordinate (0 for an unpenalised bias)."""
    t, s, d = x.shape
    if d > s:
        q, r_mat = torch.linalg.qr(x.transpose(1, 2), mode="reduced")  # q [T,D,S], r [T,S,S]
        z = r_mat.transpose(1, 2)  # X Q
    else:
        q, z = None, x
    r = z.shape[2]
    # penalty weights of the coordinates, filled on the device (a torch.tensor from a list
    # would be a blocking host-to-device copy)
    reg = torch.ones(r + int(fit_bias), dtype=x.dtype, device=x.device)
    if fit_bias:
        z = torch.cat([z, torch.ones(t, s, 1, dtype=x.dtype, device=x.device)], dim=2)
        if not penalize_bias:
            reg[r] = 0.0
    return q, z, r, reg


def _ce_hessian(z: Tensor, p: Tensor, C: float, hdiag: Tensor) -> Tensor:
    """The Hessian of objective (1) in theta, ``[T, R N, R N]`` with index (a, k) -> a * N + k:
    C times the cross-entropy term's, plus the penalty ``hdiag`` on the diagonal."""
    t, s, rr = z.shape
    n = p.shape[2]
    zp = (z.unsqueeze(3) * p.unsqueeze(2)).reshape(t, s, rr * n)  # z_ia p_ik
    hess = -torch.bmm(zp.transpose(1, 2), zp)  # -sum_i z_ia p_ik z_ib p_il
    diag_part = torch.bmm(zp.transpose(1, 2), z).view(t, rr, n, rr)  # sum_i z_ia p_ik z_ib
    h5 = hess.view(t, rr, n, rr, n)
    torch.diagonal(h5, dim1=2, dim2=4).add_(diag_part.permute(0, 1, 3, 2))
    hess = C * hess
    hess.diagonal(dim1=1, dim2=2).add_(hdiag)
    return hess


def _damped_cholesky(hess: Tensor, chol: Tensor, info: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Cholesky factors of ``hess`` with a growing ridge on the tasks whose factorisation failed
    (numerically indefinite), only those, so that a task's fit does not depend on the others in
    its batch: ``(chol, info)``."""
    t = hess.shape[0]
    eye = torch.eye(hess.shape[1], dtype=hess.dtype, device=hess.device)
    jitter = eps
    damp = torch.zeros(t, 1, 1, dtype=hess.dtype, device=hess.device)
    while jitter < 1.0:
        damp = torch.where((info != 0).view(t, 1, 1), torch.full_like(damp, jitter), damp)
        chol, info = torch.linalg.cholesky_ex(hess + damp * eye)
        jitter *= 100.0
        if not bool((info != 0).any()):
            break
    return chol, info


def _newton_solve(
    z: Tensor, y1h: Tensor, reg: Tensor, C: float, eps: float, max_iter: int, gtol: float, alphas: Tensor, on_host: bool
) -> Tensor:
    """Batched Newton iterations (2) on objective (1) from theta = 0, each with a backtracking line
    search; a task whose gradient max-norm is below ``gtol`` is frozen. ``on_host``: host reads
    are free, so each decision is read when it arises (else one read per iteration)."""
    t, _, rr = z.shape
    n = y1h.shape[2]
    hdiag = torch.where(reg > 0, reg, torch.full_like(reg, eps)).repeat_interleave(n)  # [(R N)]
    theta = torch.zeros(t, rr, n, dtype=z.dtype, device=z.device)
    f = _objective(z, y1h, theta, reg, C)
    done = torch.zeros(t, dtype=torch.bool, device=z.device)  # converged tasks are frozen
    for _ in range(max_iter):
        p = torch.softmax(torch.bmm(z, theta), dim=-1)  # [T,S,N]
        grad = reg.view(1, -1, 1) * theta + C * torch.bmm(z.transpose(1, 2), p - y1h)  # [T,R,N]
        done = done | (grad.abs().amax(dim=(1, 2)) <= gtol)
        if on_host and bool(done.all()):
            break
        hess = _ce_hessian(z, p, C, hdiag)
        g = grad.reshape(t, rr * n, 1)
        chol, info = torch.linalg.cholesky_ex(hess)
        if on_host:
            failed = bool((info != 0).any())
        else:  # the iteration's one host read (module docstring)
            stop, failed = torch.stack([done.all(), (info != 0).any()]).tolist()
            if stop:
                break
        if failed:
            chol, info = _damped_cholesky(hess, chol, info, eps)
        step = -torch.cholesky_solve(g, chol).view(t, rr, n)
        step = torch.where(done.view(t, 1, 1), torch.zeros_like(step), step)
        theta, f = _line_search(z, y1h, reg, C, theta, f, step, grad, alphas, 1 if on_host else _LS_STEPS)
    return theta


@torch.no_grad()
def logistic_fit(
    support: Tensor,
    support_labels: Tensor,
    n_way: int,
    C: float = 3.0,
    *,
    fit_bias: bool = True,
    penalize_bias: bool = False,
    normalize: bool = False,
    max_iter: int = 100,
    tol: float = 1e-9,
    solver_dtype: torch.dtype | None = torch.float64,
) -> tuple[Tensor, Tensor | None]:
    """Fit objective (1) for every task of a meta-batch by batched Newton steps (2).

    Args:
        support: ``[T, S, D]`` support features.
        support_labels: ``[T, S]`` int64 labels in ``0..n_way-1``.
        n_way: classes per task N. Classes absent from a task's support get the logits the
            regulariser prefers (they are never predicted over present ones in practice).
        C: inverse regularisation strength (scikit-learn's ``C``; Wang et al. use 3).
        fit_bias: fit an intercept ``b`` (scikit-learn's ``fit_intercept``).
        penalize_bias: also penalise ``0.5 ||b||^2`` (liblinear's convention, intercept_scaling=1);
            default False = scikit-learn's lbfgs/newton-cg convention.
        normalize: L2-normalise each feature vector first (Wang et al.'s test-time protocol).
        max_iter: Newton iterations at most.
        tol: stop when every task's gradient max-norm is below ``tol * (1 + C * S)``.
        solver_dtype: dtype used inside the solver (float64 by default, also for float32
            inputs: Newton then meets scikit-learn to ~1e-10); ``None`` keeps the input dtype.

    Returns:
        ``(W, b)`` in the input dtype: ``W`` ``[T, D, N]``, ``b`` ``[T, N]`` (``None`` if
        ``fit_bias=False``). Logits of a query ``x`` are ``x @ W + b`` (after normalising x
        when ``normalize=True``; :func:`logistic_logits` does this).
    """
    check_support(support, support_labels, n_way, _HEAD)
    if not (C > 0):
        raise ValueError(f"{_HEAD}: C must be > 0 (inverse regularisation strength), got {C}.")
    out_dtype = support.dtype
    x = support.to(solver_dtype) if solver_dtype is not None else support
    if normalize:
        x = F.normalize(x, dim=-1)
    s = x.shape[1]
    y1h = F.one_hot(support_labels, n_way).to(x.dtype)

    q, z, r, reg = _reduce_features(x, fit_bias, penalize_bias)
    # Tiny ridge on unpenalised coordinates only (the flat softmax-shift direction).
    eps = 1e-10 * max(1.0, C * s)
    theta = _newton_solve(z, y1h, reg, C, eps, max_iter, tol * (1.0 + C * s), _step_lengths(x), reads_are_free(x))

    v = theta[:, :r, :]
    w = v if q is None else torch.bmm(q, v)  # [T,D,N]
    b = theta[:, r, :] if fit_bias else None
    w = w.to(out_dtype)
    return w, (b.to(out_dtype) if b is not None else None)


@torch.no_grad()
def logistic_logits(
    support: Tensor,
    support_labels: Tensor,
    query: Tensor,
    n_way: int,
    C: float = 3.0,
    *,
    normalize: bool = False,
    fit_bias: bool = True,
    penalize_bias: bool = False,
    max_iter: int = 100,
    tol: float = 1e-9,
    solver_dtype: torch.dtype | None = torch.float64,
) -> Tensor:
    """Fit (1) on the support set of each task and score the queries: ``[T, Q, n_way]``.

    Wang et al. (2021)'s MTL test-time head is
    ``logistic_logits(s, y, q, n_way, C=3.0, normalize=True)``. With ``normalize=True`` the
    queries are L2-normalised like the support features. See :func:`logistic_fit`.
    """
    check_support(support, support_labels, n_way, "logistic_logits", query)
    w, b = logistic_fit(
        support,
        support_labels,
        n_way,
        C,
        fit_bias=fit_bias,
        penalize_bias=penalize_bias,
        normalize=normalize,
        max_iter=max_iter,
        tol=tol,
        solver_dtype=solver_dtype,
    )
    qx = F.normalize(query, dim=-1) if normalize else query
    out = torch.bmm(qx, w)
    return out if b is None else out + b.unsqueeze(1)
