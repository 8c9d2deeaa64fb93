"""The min-norm point in the convex hull of K vectors, from their Gram matrix (a helper of
MGDA, :mod:`.mgda`; also the shared small utilities of the gradient methods).

Given K vectors g_1..g_K (the rows of G, [K, P]) and their Gram matrix M = G G^T [K, K], find

    alpha* = argmin_{alpha in Delta_K} || sum_i alpha_i g_i ||^2 = argmin_{alpha in Delta_K} alpha^T M alpha,

Delta_K = {alpha >= 0, sum_i alpha_i = 1} (Sener & Koltun, "Multi-Task Learning as
Multi-Objective Optimization", NeurIPS 2018, eq. (3)). Only M is read, so the cost does not
grow with P once M is formed.

* K = 2 (Sener & Koltun, Alg. 1): the exact closed form
  gamma = clamp((g_2 - g_1).g_2 / ||g_1 - g_2||^2, 0, 1), alpha = (gamma, 1 - gamma), i.e.
  gamma = clamp((M_22 - M_12) / (M_11 + M_22 - 2 M_12), 0, 1).
* K > 2: Frank-Wolfe (Sener & Koltun, Alg. 2; Jaggi, "Revisiting Frank-Wolfe", ICML 2013)
  from the uniform point, with the exact line search (the K = 2 closed form between the
  iterate and a vertex). By default with away steps (Lacoste-Julien & Jaggi, "On the Global
  Linear Convergence of Frank-Wolfe Optimization Variants", NeurIPS 2015), which converge
  linearly on this problem where the plain method zig-zags when the solution lies on a
  face of the simplex, and every ``polish_every`` iterations the exact minimiser on the
  current support face (a (K+1) x (K+1) KKT solve) replaces the iterate when it is feasible
  and no worse, which ends the iteration once the support is found;
  ``away_steps=False, polish_every=0`` is Sener & Koltun's Alg. 2 exactly. It stops
  when the Frank-Wolfe duality gap (alpha - e_s)^T M alpha, s = argmin_r (M alpha)_r, which
  bounds the suboptimality of alpha^T M alpha, or alpha^T M alpha itself (0 in the hull), is
  below ``tol * max_i M_ii``, or after
  ``max_iter`` iterations (the iterate is always feasible).

Everything runs in torch on the Gram matrix's device. The gradient methods form M in the
gradients' dtype and solve in float64 (float32 on MPS, which has no float64).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_grads", "frank_wolfe", "gram_matrix", "min_norm_two", "min_norm_weights", "solve_dtype"]


def solve_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the small K x K solves: float64, except on MPS (no float64 there)."""
    return torch.float32 if device.type == "mps" else torch.float64


def check_grads(grads: Tensor, num_tasks: int, who: str) -> None:
    """Validate a [K, P] gradient matrix (shape, floating dtype, finite entries)."""
    if not isinstance(grads, Tensor) or grads.dim() != 2 or grads.shape[0] != num_tasks:
        shape = tuple(grads.shape) if isinstance(grads, Tensor) else type(grads).__name__
        raise ValueError(f"{who}: expected the per-task gradients as a [{num_tasks}, P] tensor (got {shape}).")
    if not grads.is_floating_point():
        raise ValueError(f"{who}: the gradients must be a floating-point tensor (got {grads.dtype}).")
    if grads.shape[1] == 0:
        raise ValueError(f"{who}: the gradients have no entries (P = 0): are there shared parameters?")
    if not bool(torch.isfinite(grads).all()):
        bad = (~torch.isfinite(grads)).any(dim=1).nonzero().flatten().tolist()
        raise FloatingPointError(
            f"{who}: non-finite gradient for task(s) {bad}; lower the learning rate or check the losses."
        )


def gram_matrix(grads: Tensor) -> Tensor:
    """M = G G^T [K, K], formed in the gradients' dtype, returned in :func:`solve_dtype`."""
    gram = grads @ grads.T
    gram = 0.5 * (gram + gram.T)  # exactly symmetric
    return gram.to(solve_dtype(grads.device))


def _check_gram(gram: Tensor) -> None:
    if not isinstance(gram, Tensor) or gram.dim() != 2 or gram.shape[0] != gram.shape[1] or gram.shape[0] < 1:
        shape = tuple(gram.shape) if isinstance(gram, Tensor) else type(gram).__name__
        raise ValueError(f"min-norm solver: expected a square [K, K] Gram matrix with K >= 1 (got {shape}).")
    if not gram.is_floating_point():
        raise ValueError(f"min-norm solver: the Gram matrix must be floating point (got {gram.dtype}).")
    if not bool(torch.isfinite(gram).all()):
        raise FloatingPointError("min-norm solver: the Gram matrix has non-finite entries.")


def min_norm_two(gram: Tensor) -> Tensor:
    """Exact min-norm weights (gamma, 1 - gamma) for two vectors from their [2, 2] Gram matrix.

    gamma = clamp((M_22 - M_12) / (M_11 + M_22 - 2 M_12), 0, 1); when g_1 = g_2 (zero
    denominator) every gamma is optimal and 1/2 is returned."""
    _check_gram(gram)
    if gram.shape[0] != 2:
        raise ValueError(f"min_norm_two takes a [2, 2] Gram matrix (got {tuple(gram.shape)}).")
    m11, m12, m22 = gram[0, 0], gram[0, 1], gram[1, 1]
    denom = m11 + m22 - 2 * m12
    tiny = torch.finfo(gram.dtype).tiny
    gamma = torch.where(denom > tiny, (m22 - m12) / denom.clamp_min(tiny), torch.full_like(denom, 0.5))
    gamma = gamma.clamp(0.0, 1.0)
    return torch.stack([gamma, 1 - gamma])


def _face_solution(gram: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    """The minimiser of a^T M a on the affine hull of alpha's support face (sum a = 1, a_i = 0
    off the support), by its KKT system (masked to a fixed [K+1, K+1] shape: no host sync), and
    whether it is usable (solved, finite, nonnegative)."""
    k = gram.shape[0]
    on = alpha > 0
    onf = on.to(gram.dtype)
    kkt = gram.new_zeros(k + 1, k + 1)
    kkt[:k, :k] = gram * (onf[:, None] * onf[None, :]) + torch.diag(1 - onf)
    kkt[:k, k] = onf
    kkt[k, :k] = onf
    rhs = gram.new_zeros(k + 1)
    rhs[k] = 1
    sol, info = torch.linalg.solve_ex(kkt, rhs)
    cand = sol[:k]
    ok = (info == 0) & torch.isfinite(cand).all() & (cand >= 0).all()
    return torch.where(torch.isfinite(cand), cand, torch.zeros_like(cand)), ok


def frank_wolfe(
    gram: Tensor, max_iter: int = 250, tol: float = 1e-10, away_steps: bool = True, polish_every: int = 5
) -> Tensor:
    """Min-norm weights alpha in the simplex for any K by Frank-Wolfe on alpha^T M alpha.

    Args:
        gram: M = G G^T, [K, K].
        max_iter: at most this many iterations (the last iterate is returned; it is feasible).
        tol: stop when the duality gap (alpha - e_s)^T M alpha, or alpha^T M alpha, is <= tol * max_i M_ii.
        away_steps: use away steps (linear convergence).
        polish_every: every this many iterations, try the exact minimiser on the current
            support face (its KKT system) and keep it when it is feasible and no worse: once
            Frank-Wolfe has found the support, this ends the iteration. 0: never.
            ``away_steps=False, polish_every=0`` is Sener & Koltun's Alg. 2 exactly.
    """
    _check_gram(gram)
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"frank_wolfe: max_iter must be a positive integer (got {max_iter!r}).")
    if not tol >= 0:
        raise ValueError(f"frank_wolfe: tol must be >= 0 (got {tol!r}).")
    if not isinstance(polish_every, int) or polish_every < 0:
        raise ValueError(f"frank_wolfe: polish_every must be an integer >= 0 (got {polish_every!r}).")
    k = gram.shape[0]
    alpha = torch.full((k,), 1.0 / k, dtype=gram.dtype, device=gram.device)
    if k == 1:
        return alpha
    eye = torch.eye(k, dtype=gram.dtype, device=gram.device)
    scale = gram.diagonal().max().clamp_min(torch.finfo(gram.dtype).tiny)
    inf = torch.tensor(float("inf"), dtype=gram.dtype, device=gram.device)
    index = torch.arange(k, device=gram.device)
    for it in range(max_iter):
        if polish_every and it % polish_every == polish_every - 1:
            cand, ok = _face_solution(gram, alpha)
            better = ok & (cand @ gram @ cand <= alpha @ gram @ alpha)
            alpha = torch.where(better, cand / cand.sum().clamp_min(torch.finfo(gram.dtype).tiny), alpha)
        q = gram @ alpha  # half the gradient of alpha^T M alpha
        aq = alpha @ q
        s = torch.argmin(q)
        gap_fw = aq - q[s]
        if bool(torch.minimum(gap_fw, aq) <= tol * scale):  # f - f* <= gap, and f - f* <= f as f* >= 0
            break
        d = eye[s] - alpha
        gamma_max = torch.ones((), dtype=gram.dtype, device=gram.device)
        if away_steps:
            active = alpha > 0
            v = torch.argmax(torch.where(active, q, -inf))
            gap_away = q[v] - aq
            use_away = gap_away > gap_fw
            d = torch.where(use_away, alpha - eye[v], d)
            av = alpha[v]
            gamma_max = torch.where(use_away, av / (1 - av).clamp_min(torch.finfo(gram.dtype).tiny), gamma_max)
        # exact line search of (alpha + g d)^T M (alpha + g d) over [0, gamma_max]
        dq = d @ q
        dmd = d @ gram @ d
        gamma = torch.where(dmd > 0, -dq / dmd.clamp_min(torch.finfo(gram.dtype).tiny), gamma_max)
        gamma = torch.minimum(gamma.clamp_min(0.0), gamma_max)
        alpha = (alpha + gamma * d).clamp_min(0.0)
        if away_steps:  # a full away step drops vertex v: make it exactly 0, so it leaves the active set
            alpha = torch.where(use_away & (gamma >= gamma_max) & (index == v), torch.zeros_like(alpha), alpha)
        alpha = alpha / alpha.sum()
    return alpha


def min_norm_weights(
    gram: Tensor, max_iter: int = 250, tol: float = 1e-10, away_steps: bool = True, polish_every: int = 5
) -> Tensor:
    """alpha* = argmin over the simplex of alpha^T M alpha: closed form for K <= 2, Frank-Wolfe
    (:func:`frank_wolfe`) for K > 2. The min-norm point is G^T alpha*."""
    _check_gram(gram)
    k = gram.shape[0]
    if k == 1:
        return torch.ones(1, dtype=gram.dtype, device=gram.device)
    if k == 2:
        return min_norm_two(gram)
    return frank_wolfe(gram, max_iter=max_iter, tol=tol, away_steps=away_steps, polish_every=polish_every)
