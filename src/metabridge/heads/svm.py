"""MetaOptNet-SVM: a batched, differentiable multi-class (Crammer-Singer) SVM head.

Lee, Maji, Ravichandran & Soatto, "Meta-Learning with Differentiable Convex
Optimization", CVPR 2019, Sec. 3.3. The base learner is the Crammer & Singer (2001)
multi-class SVM on the support features x_n with labels y_n:

    primal:  min_{w, xi}  0.5 sum_k ||w_k||^2 + C sum_n xi_n
             s.t.  w_{y_n}.x_n - w_k.x_n >= 1 - delta_{y_n,k} - xi_n   for all n, k      (1)

which MetaOptNet solves in the dual (their Eq. 9), with alpha_n in R^N per support point:

    dual:    min_alpha  0.5 sum_k || sum_n alpha_n^k x_n ||^2 - sum_n alpha_n^{y_n}
             s.t.  alpha_n <= C e_{y_n},   sum_k alpha_n^k = 0                            (2)

    w_k = sum_n alpha_n^k x_n,     logit_k(x) = sum_n alpha_n^k <x_n, x>                  (3)

In vector form, with m = S N unknowns a = vec(alpha) (index n N + k), the dual is the
QP  min 0.5 a^T G a + q^T a  s.t.  a <= h, E a = 0  with G = K (x) I_N (+ rho I),
K = X X^T, q = -vec(onehot(y)), h = C vec(onehot(y)), E = I_S (x) 1_N^T. ``rho``
(``dual_ridge``) is 0 for the exact problem (2); MetaOptNet's public implementation adds
an identity (rho = 1) to make the dual strictly convex.

Solver (forward). A batched primal-dual interior-point method with Mehrotra's
predictor-corrector (Nocedal & Wright, Numerical Optimization, 2nd ed., Alg. 16.4 /
Sec. 14.2), all tasks at once: every iteration factors H = G + diag(lambda/s) by a
batched Cholesky and eliminates the S equality constraints by an S x S Schur complement;
converged tasks are frozen. It runs in float64 by default (``solver_dtype``) and stops
when the KKT residuals and the complementarity gap are below ``tol`` (relative), usually
after 10-20 iterations. Unrolling is not used: projected-gradient-type solvers need
hundreds of iterations on ill-conditioned Gram matrices and backpropagating through them
costs memory proportional to the iterations.

Host syncs. Converged tasks are frozen (their step is exactly zero), so iterating past
convergence changes no iterate, bit for bit. On the host the "all converged?" test is read
every iteration (free); on an accelerator it is read only every :data:`DEVICE_CHECK_EVERY`
iterations, each read making the host wait for the queued work: the solution is the same,
at the cost of at most ``DEVICE_CHECK_EVERY - 1`` idle iterations, and the reported
iteration count is that of the check that saw convergence. The backward pass reads the host
once (whether a singular block needs the dense fallback).

Gradient (backward). Implicit differentiation of the KKT conditions at the solution
(the same idea as OptNet / qpth, Amos & Kolter 2017, which MetaOptNet used), restricted
to the active set A = {i : a_i = h_i} found by the IPM (lambda_i > s_i): with F the free
coordinates and P = diag(1_F),

    [ P G P + (I - P)   P E^T ] [ u ]   [ P dL/da ]
    [ E P               0     ] [ w ] = [    0    ]                                       (4)

and, since only G depends on the features, dL/dK_{nm} = -sum_k u_n^k a_m^k (and
dL/drho = -u.a). This is the exact derivative of the (piecewise smooth) solution map
wherever strict complementarity holds; it is well posed when K is nonsingular on the free
support points (S <= D in practice) or rho > 0; otherwise a pseudo-inverse is used.
Since G is block diagonal over classes, (4) is solved with N Cholesky factorisations of
S x S blocks and an S x S Schur complement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ._checks import check_support, reads_are_free

__all__ = ["svm_cs_dual", "svm_cs_fit", "metaoptnet_svm_logits"]

_HEAD = "metaoptnet_svm_logits"

#: On an accelerator, the interior-point method checks for convergence every this many
#: iterations (one host read each; module docstring). On the host it checks every iteration.
DEVICE_CHECK_EVERY = 4


def _max_step(v: Tensor, dv: Tensor) -> Tensor:
    """Largest a in (0, 1] with v + a dv >= 0 componentwise, per task (rows of ``[T, m]``)."""
    ratio = torch.where(dv < 0, -v / dv, torch.full_like(v, float("inf")))
    return ratio.amin(dim=-1).clamp(max=1.0)


def _bdot(mat: Tensor, v: Tensor) -> Tensor:
    """Per-class matrix-vector products: ``[T, N, S, S] x [T, N, S] -> [T, N, S]``."""
    return torch.matmul(mat, v.unsqueeze(-1)).squeeze(-1)


def _mehrotra_direction(
    kr: Tensor, sl: Tensor, lam: Tensor, r_d: Tensor, r_e: Tensor, r_p: Tensor, mu: Tensor, delta: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One Mehrotra predictor-corrector direction of :func:`_ipm_cs_dual` at the iterate with slack
    ``sl`` and multiplier ``lam`` (class-major ``[T, N, S]``) and residuals ``r_d``, ``r_e``, ``r_p``:
    ``(dx, ds, dlam, dnu, step)``, ``step`` ``[T]`` the fraction-to-the-boundary step length
    (0.99 of the largest feasible one; 0 for a task whose direction is not finite)."""
    t, n, s_n = sl.shape
    dvec = lam / sl + delta  # [T, N, S]
    hk = kr.unsqueeze(1) + torch.diag_embed(dvec)  # [T, N, S, S]
    chol, _ = torch.linalg.cholesky_ex(hk)
    hinv = torch.cholesky_inverse(chol)  # [T, N, S, S]
    chol_s, _ = torch.linalg.cholesky_ex(hinv.sum(1))  # Schur complement E H^-1 E^T

    def newton(r_c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        b1 = -r_d - (r_c + lam * r_p) / sl
        yv = _bdot(hinv, b1)
        dnu = torch.cholesky_solve((yv.sum(1) + r_e).unsqueeze(-1), chol_s).squeeze(-1)
        dx = yv - _bdot(hinv, dnu.unsqueeze(1).expand(t, n, s_n))
        ds = -r_p - dx
        dlam = (r_c - lam * ds) / sl
        return dx, ds, dlam, dnu

    def max_step(v: Tensor, dv: Tensor) -> Tensor:
        return _max_step(v.reshape(t, -1), dv.reshape(t, -1))

    # Predictor (affine-scaling) step.
    dx_a, ds_a, dl_a, _ = newton(-sl * lam)
    a_aff = torch.minimum(max_step(sl, ds_a), max_step(lam, dl_a)).view(t, 1, 1)
    mu_aff = ((sl + a_aff * ds_a) * (lam + a_aff * dl_a)).mean(dim=(1, 2))
    sigma = (mu_aff / mu).clamp(0.0, 1.0) ** 3
    # Corrector-centring step.
    dx, ds, dl, dnu = newton(-sl * lam - ds_a * dl_a + (sigma * mu).view(t, 1, 1))
    step = 0.99 * torch.minimum(max_step(sl, ds), max_step(lam, dl))
    ok = torch.isfinite(dx).all(-1).all(-1) & torch.isfinite(dl).all(-1).all(-1) & torch.isfinite(dnu).all(-1)
    return dx, ds, dl, dnu, torch.where(~ok, torch.zeros_like(step), step)


def _ipm_cs_dual(
    k: Tensor, y1h: Tensor, c: float, rho: float, tol: float, max_iter: int
) -> tuple[Tensor, Tensor, Tensor, int, bool]:
    """Batched Mehrotra predictor-corrector IPM for the dual QP (2).

    Works in class-major order (x[t, k, n] = alpha_n^k), where G = I_N (x) (K + rho I) is
    block diagonal: the Newton matrix H = G + diag(lambda/s) splits into N blocks
    H_k = K + rho I + diag(d_k) of size S x S, inverted by a batched Cholesky
    ([T*N, S, S]); the S equality constraints are eliminated by the Schur complement
    sum_k H_k^{-1} ([T, S, S]). Cost per iteration O(T N S^3), not O(T (N S)^3).

    Returns (a [T, S*N] in (n, k) order, slack s, multiplier lam (same order), iterations,
    converged). Convergence is read on the host every iteration for host tensors, every
    :data:`DEVICE_CHECK_EVERY` iterations otherwise (module docstring: same solution).
    """
    t, s_n, n = y1h.shape
    dt, dev = k.dtype, k.device
    yk = y1h.transpose(1, 2)  # [T, N, S]
    q = -yk
    h = c * yk
    kr = k + rho * torch.eye(s_n, dtype=dt, device=dev) if rho else k

    x = torch.zeros(t, n, s_n, dtype=dt, device=dev)
    sl = torch.ones(t, n, s_n, dtype=dt, device=dev)
    lam = torch.ones(t, n, s_n, dtype=dt, device=dev)
    nu = torch.zeros(t, s_n, dtype=dt, device=dev)
    # Scales are per task ([T]), so that a task's iterates and stopping point do not depend
    # on which other tasks share its batch (evaluation is invariant to the batch size).
    gscale = 1.0 + k.diagonal(dim1=1, dim2=2).abs().amax(-1) * c + rho * c
    pscale = 1.0 + c
    eps = torch.finfo(dt).eps
    tol = max(tol, 10 * eps)
    # Complementarity gap: alpha's error is about mu / lambda_active, so ask for tol^2, but
    # not below what the working precision can deliver.
    mu_tol = max(tol * tol, 10 * eps) * gscale * pscale
    # Tiny primal regularisation keeps H positive definite when K is singular (S > D) and
    # some lambda/s -> 0; residuals are exact, so the fixed point is unchanged.
    delta = (1e-12 if dt == torch.float64 else 1e-6) * gscale.view(t, 1, 1)
    done = torch.zeros(t, dtype=torch.bool, device=dev)

    def flat(v: Tensor) -> Tensor:  # [T, N, S] -> [T, m] in (n, k) order
        return v.transpose(1, 2).reshape(t, s_n * n)

    check_every = 1 if reads_are_free(k) else max(1, int(DEVICE_CHECK_EVERY))
    converged = False
    it = 0
    for it in range(1, max_iter + 1):
        r_d = torch.bmm(x, kr) + q + nu.unsqueeze(1) + lam  # K symmetric: x_k K = (K x_k)^T
        r_e = x.sum(1)
        r_p = x + sl - h
        mu = (sl * lam).mean(dim=(1, 2))
        conv = (
            (r_d.abs().amax(dim=(1, 2)) <= tol * gscale)
            & (r_p.abs().amax(dim=(1, 2)) <= tol * pscale)
            & (r_e.abs().amax(-1) <= tol * pscale)
            & (mu <= mu_tol)
        )
        done = done | conv
        if it % check_every == 0:
            if bool(done.all()):  # the host read (every iteration on the host)
                converged = True
                break
        dx, ds, dl, dnu, step = _mehrotra_direction(kr, sl, lam, r_d, r_e, r_p, mu, delta)
        step = torch.where(done, torch.zeros_like(step), step)
        st = step.view(t, 1, 1)
        x = x + st * torch.nan_to_num(dx)
        sl = sl + st * torch.nan_to_num(ds)
        lam = lam + st * torch.nan_to_num(dl)
        nu = nu + step.view(t, 1) * torch.nan_to_num(dnu)
    if not converged:  # max_iter reached without a read that saw convergence
        converged = bool(done.all())
    return flat(x), flat(sl), flat(lam), it, converged


class _CSDual(torch.autograd.Function):
    """alpha = argmin of (2) given the Gram matrix K; backward by (4)."""

    @staticmethod
    def forward(ctx, k: Tensor, y1h: Tensor, c: float, rho: float, tol: float, max_iter: int):  # type: ignore[override]
        with torch.no_grad():
            a, sl, lam, iters, conv = _ipm_cs_dual(k, y1h, c, rho, tol, max_iter)
        t, s_n, n = y1h.shape
        free = ~(lam > sl)
        ctx.save_for_backward(k, a, free)
        ctx.shape = (t, s_n, n)
        ctx.rho = rho
        ctx.info = (iters, conv)
        return a.view(t, s_n, n)

    @staticmethod
    def backward(ctx, grad_a: Tensor):  # type: ignore[override]
        k, a, free = ctx.saved_tensors
        t, s_n, n = ctx.shape
        dt, dev = k.dtype, k.device
        # Class-major views: [T, N, S]. G = I_N (x) (K + rho I) is block diagonal, so (4)
        # is solved blockwise, M_k = P_k K P_k + (I - P_k), with the S equality constraints
        # eliminated through the Schur complement sum_k P_k M_k^{-1} P_k (all Cholesky; no
        # batched LU, whose MKL path failed here with 2 threads).
        p = free.view(t, s_n, n).transpose(1, 2).to(dt)
        a_cm = a.view(t, s_n, n).transpose(1, 2)
        g_cm = grad_a.to(dt).transpose(1, 2)
        eye = torch.eye(s_n, dtype=dt, device=dev)
        kr = k + ctx.rho * eye if ctx.rho else k
        mk = p.unsqueeze(-1) * kr.unsqueeze(1) * p.unsqueeze(-2) + torch.diag_embed(1.0 - p)
        minv, ok_m = _spd_inverse(mk)  # [T, N, S, S]
        pmp = p.unsqueeze(-1) * minv * p.unsqueeze(-2)  # P_k M_k^-1 P_k
        sinv, ok_s = _spd_inverse(pmp.sum(1))
        rhs = torch.matmul(pmp, g_cm.unsqueeze(-1)).sum(1)  # [T, S, 1]
        w = torch.matmul(sinv, rhs)  # [T, S, 1]
        u = torch.matmul(pmp, (g_cm.unsqueeze(-1) - w.unsqueeze(1))).squeeze(-1)  # [T, N, S]
        bad = ~(ok_m.all(1) & ok_s)
        if bool(bad.any()):
            # A block is singular (K rank-deficient on the free points, S > D, rho = 0): the
            # blockwise elimination does not apply, but the full system (4) may still be
            # consistent; solve it densely with a symmetric pseudo-inverse for those tasks.
            u = u.clone()
            u[bad] = _dense_kkt_adjoint(kr[bad], p[bad], g_cm[bad])
        grad_k = -torch.einsum("tki,tkj->tij", u, a_cm)
        return grad_k, None, None, None, None, None


def _spd_inverse(mat: Tensor) -> tuple[Tensor, Tensor]:
    """Cholesky inverse of a batch of SPD matrices, and a flag per matrix saying whether it
    was safely positive definite (no failure, pivot ratio above ~1e3 eps)."""
    chol, info = torch.linalg.cholesky_ex(mat)
    piv = chol.diagonal(dim1=-2, dim2=-1).abs()
    ratio = piv.amin(-1) / piv.amax(-1).clamp_min(torch.finfo(mat.dtype).tiny)
    ok = (info == 0) & (ratio * ratio > 1e3 * torch.finfo(mat.dtype).eps)
    eye = torch.eye(mat.shape[-1], dtype=mat.dtype, device=mat.device)
    chol = torch.where(ok.unsqueeze(-1).unsqueeze(-1), chol, eye)  # placeholders, replaced by the caller
    return torch.cholesky_inverse(chol), ok


def _dense_kkt_adjoint(kr: Tensor, p: Tensor, g_cm: Tensor) -> Tensor:
    """Solve (4) densely by a symmetric-eigendecomposition pseudo-inverse (fallback).

    kr [B, S, S], p and g_cm [B, N, S] (class-major) -> u [B, N, S].
    """
    b, n, s_n = p.shape
    m = n * s_n
    dt, dev = kr.dtype, kr.device
    eye_n = torch.eye(n, dtype=dt, device=dev)
    g = (eye_n.view(1, n, 1, n, 1) * kr.view(b, 1, s_n, 1, s_n)).reshape(b, m, m)  # I_N (x) K
    pf = p.reshape(b, m)
    et = torch.eye(s_n, dtype=dt, device=dev).repeat(n, 1).expand(b, m, s_n)  # E^T, class-major
    top_left = pf.unsqueeze(-1) * g * pf.unsqueeze(-2) + torch.diag_embed(1.0 - pf)
    top_right = pf.unsqueeze(-1) * et
    zeros = torch.zeros(b, s_n, s_n, dtype=dt, device=dev)
    kkt = torch.cat([torch.cat([top_left, top_right], 2), torch.cat([top_right.transpose(1, 2), zeros], 2)], 1)
    evals, evecs = torch.linalg.eigh(kkt)
    cut = evals.abs().amax(-1, keepdim=True) * (m + s_n) * torch.finfo(dt).eps * 1e3
    inv_e = torch.where(evals.abs() > cut, 1.0 / evals, torch.zeros_like(evals))
    rhs = torch.cat([pf * g_cm.reshape(b, m), torch.zeros(b, s_n, dtype=dt, device=dev)], 1)
    sol = evecs @ (inv_e * (evecs.transpose(1, 2) @ rhs.unsqueeze(-1)).squeeze(-1)).unsqueeze(-1)
    return (pf * sol[:, :m, 0]).view(b, n, s_n)


def svm_cs_dual(
    gram: Tensor,
    support_labels: Tensor,
    n_way: int,
    C: float = 0.1,
    *,
    dual_ridge: float = 0.0,
    tol: float = 1e-9,
    max_iter: int = 100,
    solver_dtype: torch.dtype | None = torch.float64,
) -> Tensor:
    """Solve the Crammer-Singer dual (2) for every task; differentiable w.r.t. ``gram``.

    Args:
        gram: ``[T, S, S]`` support Gram matrices K = X X^T (any PSD kernel matrix).
        support_labels: ``[T, S]`` int64 labels in ``0..n_way-1``.
        n_way: classes per task N.
        C: SVM cost (MetaOptNet uses 0.1).
        dual_ridge: rho added to the dual's quadratic term (0 = the exact SVM; 1.0 =
            MetaOptNet's reference implementation).
        tol: relative tolerance on the KKT residuals of the interior-point method.
        max_iter: interior-point iterations at most.
        solver_dtype: dtype of the solve and of the backward system (float64 default);
            ``None`` keeps the input dtype.

    Returns:
        ``alpha`` ``[T, S, n_way]`` in ``gram``'s dtype (W = X^T alpha, Eq. 3).
    """
    if gram.dim() != 3 or gram.shape[1] != gram.shape[2]:
        raise ValueError(f"svm_cs_dual: gram must be [T, S, S], got {tuple(gram.shape)}.")
    if not (C > 0):
        raise ValueError(f"svm_cs_dual: C must be > 0 (SVM cost), got {C}.")
    if dual_ridge < 0:
        raise ValueError(f"svm_cs_dual: dual_ridge must be >= 0, got {dual_ridge}.")
    t, s = gram.shape[:2]
    if support_labels.shape != (t, s):
        raise ValueError(
            f"svm_cs_dual: support_labels has shape {tuple(support_labels.shape)}, expected [T, S] = [{t}, {s}]."
        )
    work = solver_dtype if solver_dtype is not None else gram.dtype
    k = gram.to(work)
    y1h = F.one_hot(support_labels, n_way).to(work)
    a = _CSDual.apply(k, y1h, float(C), float(dual_ridge), float(tol), int(max_iter))
    return a.to(gram.dtype)


def svm_cs_fit(support: Tensor, support_labels: Tensor, n_way: int, C: float = 0.1, **kwargs) -> Tensor:
    """Primal weights ``W = X^T alpha`` ``[T, D, n_way]`` of the Crammer-Singer SVM (1)-(3).

    ``kwargs`` go to :func:`svm_cs_dual`. Differentiable w.r.t. ``support``.
    """
    check_support(support, support_labels, n_way, "svm_cs_fit")
    gram = torch.bmm(support, support.transpose(1, 2))
    alpha = svm_cs_dual(gram, support_labels, n_way, C, **kwargs)
    return torch.bmm(support.transpose(1, 2), alpha)


def metaoptnet_svm_logits(
    support: Tensor,
    support_labels: Tensor,
    query: Tensor,
    n_way: int,
    C: float = 0.1,
    *,
    scale: float | Tensor = 1.0,
    dual_ridge: float = 0.0,
    tol: float = 1e-9,
    max_iter: int = 100,
    solver_dtype: torch.dtype | None = torch.float64,
) -> Tensor:
    """MetaOptNet-SVM query logits (Lee et al. 2019, Eq. 3 with the dual (2)).

    ``logits[t, q, k] = scale * sum_n alpha[t, n, k] <x_n, x_q>``, differentiable w.r.t.
    support and query features (through the KKT conditions of the QP) and ``scale``
    (MetaOptNet learns a scale on the logits).

    Args:
        support: ``[T, S, D]``; support_labels: ``[T, S]`` int64; query: ``[T, Q, D]``.
        n_way: classes per task. C: SVM cost (0.1 in MetaOptNet).
        scale: multiplier of the logits (float or learnable scalar tensor owned by the caller).
        dual_ridge, tol, max_iter, solver_dtype: see :func:`svm_cs_dual`.

    Returns:
        ``[T, Q, n_way]`` logits.
    """
    check_support(support, support_labels, n_way, _HEAD, query)
    gram = torch.bmm(support, support.transpose(1, 2))
    alpha = svm_cs_dual(
        gram, support_labels, n_way, C, dual_ridge=dual_ridge, tol=tol, max_iter=max_iter, solver_dtype=solver_dtype
    )
    compat = torch.bmm(query, support.transpose(1, 2))  # [T, Q, S]
    return scale * torch.bmm(compat, alpha)
