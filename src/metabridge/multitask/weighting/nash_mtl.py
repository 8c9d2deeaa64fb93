"""Nash-MTL: Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik & Fetaya, "Multi-Task
Learning as a Bargaining Game", ICML 2022.

The Nash bargaining solution of the tasks' utilities u_i(d) = g_i . d over the ball
||d|| <= eps is d = sum_i alpha_i g_i with alpha > 0 solving (the paper's eq. (3))

    (G G^T) alpha = 1 / alpha        (elementwise), i.e. for every i: g_i . d = 1 / alpha_i.

This is the stationarity condition of the strictly convex function on alpha > 0

    f(alpha) = 1/2 alpha^T M alpha - sum_i log alpha_i,        M = G G^T,
    grad f = M alpha - 1/alpha,        hess f = M + diag(1 / alpha^2)  (positive definite),

so it is solved by damped Newton's method (no cvxpy). f is self-concordant (a quadratic plus a
log barrier), so the step length needs no search: 1 / (1 + lambda), lambda the Newton decrement,
decreases f and keeps alpha > 0 (the step stays inside the Dikin ellipsoid), and for lambda < 1/4
the full step converges quadratically (Nesterov, "Lectures on Convex Optimization", Sec. 5.2);
a guard against round-off also caps the step at 0.99 of the way to alpha_i = 0. In float64
(float32 on MPS). The system is invariant to rescaling a task (g_i -> c g_i, alpha_i -> alpha_i / c),
so it is solved for the unit-diagonal D M D, D = diag(1 / ||g_i||), from alpha = 1, and D alpha
is returned (tasks with very different gradient norms cost nothing in accuracy). Newton runs to
machine precision (or until round-off stops it on an ill-conditioned M), and the solve succeeds
when the scale-free residual max_i |alpha_i (M alpha)_i - 1| (the i-th equation relative to its
terms) is <= ``tol`` (default 1e-7). Its solution has alpha^T M alpha = K, so ||d|| = sqrt(K)
for any gradient scale. (With tol < 1 an unbounded problem can never pass this test: if
G^T v = 0 for some v >= 0, then sum_i v_i (M alpha)_i = 0, while a small residual would make
every (M alpha)_i positive.)

A solve fails when it does not converge in ``max_iter`` Newton steps, produces non-finite
numbers, or when f is unbounded below: a task gradient is zero or, more generally, a
nonnegative combination of the task gradients is zero (0 is in their convex hull, e.g. two
opposite gradients; M is then singular). Then :class:`NashMTLSolveError` is raised naming the
cause (``on_failure="raise"``, default) or, with ``on_failure="warn"``, a warning is emitted
at every failure, the previous alpha is kept and :attr:`NashMTL.failed_solves` counts it (a
failure at the very first solve, with no previous alpha, raises in both modes). Linearly
dependent gradients with no such zero combination (g_1 = g_2, say) are solvable and solved.

Options as in the paper's code: ``update_every`` (alpha is recomputed at the steps that are
multiples of it; the other steps read the losses only and use the stored alpha:
:meth:`NashMTL.needs_at` returns ``Needs.LOSSES`` and :meth:`NashMTL.objective` is
sum_i alpha_i L_i) and ``max_norm`` (default 1.0; the direction's norm is clipped to it on the
solving steps, as the paper's code clips the shared parameters' gradient; 0 or None: no
clipping; on the loss-only steps the contract gives no hook to clip, so the caller's own
gradient clipping, if any, applies). The weights returned (and used for the heads) are alpha,
unclipped.

The paper's code reaches the same alpha by a sequence of convex programs (cvxpy/ECOS, at most
20, stopping at ||M alpha - 1/alpha|| < 1e-3 on M / ||M||_F, and silently keeping the previous
alpha when ECOS fails); here the system itself is solved to ``tol``, and failures are never silent.
"""

from __future__ import annotations

import warnings
from typing import ClassVar, Literal, NoReturn

import torch
from torch import Tensor

from .base import Needs, Weighting
from .min_norm import check_grads, gram_matrix, min_norm_weights
from .registry import register_weighting

__all__ = ["NashMTL", "NashMTLSolveError", "nash_weights"]

FailureCause = Literal["nonconvergence", "nonfinite", "unbounded"]


class NashMTLSolveError(RuntimeError):
    """The Nash bargaining system M alpha = 1/alpha could not be solved; ``cause`` is
    ``"nonconvergence"``, ``"nonfinite"`` or ``"unbounded"``."""

    def __init__(self, message: str, cause: FailureCause) -> None:
        super().__init__(message)
        self.cause = cause


def _check_gram(gram: Tensor) -> None:
    """Raise :class:`NashMTLSolveError` when ``gram`` (M = G G^T) has non-finite entries or a task with a
    zero gradient (then f is unbounded below)."""
    k = gram.shape[0]
    dtype = gram.dtype
    if not bool(torch.isfinite(gram).all()):
        raise NashMTLSolveError("Nash-MTL: the Gram matrix G G^T has non-finite entries.", "nonfinite")
    diag = gram.diagonal()
    scale = diag.mean()
    zero = (diag <= torch.finfo(dtype).eps * scale.abs().clamp_min(torch.finfo(dtype).tiny)).nonzero().flatten()
    if not bool(scale > 0) or zero.numel():
        raise NashMTLSolveError(
            f"Nash-MTL: the gradient of task(s) {zero.tolist() or list(range(k))} is zero, so "
            "f(alpha) = 1/2 alpha^T M alpha - sum log alpha is unbounded below (M is singular).",
            "unbounded",
        )


def _raise_not_converged(m: Tensor, residual: float, tol: float, max_iter: int) -> NoReturn:
    """The Newton solve on the unit-diagonal ``m`` did not converge: raise :class:`NashMTLSolveError`
    with its cause."""
    # not converged: unbounded below if 0 is in the convex hull of the gradients (min-norm point
    # at 0 to 1e-5 of the unit gradients' scale)
    w = min_norm_weights(m, tol=1e-14)
    if bool(w @ m @ w <= 1e-10):
        raise NashMTLSolveError(
            "Nash-MTL: f(alpha) = 1/2 alpha^T M alpha - sum log alpha is unbounded below: a "
            "nonnegative combination of the task gradients is zero (e.g. two opposite gradients; "
            "M = G G^T is singular), so M alpha = 1/alpha has no solution.",
            "unbounded",
        )
    raise NashMTLSolveError(
        f"Nash-MTL: the Newton solve of M alpha = 1/alpha did not converge ({max_iter} "
        f"iterations at most; residual max_i |alpha_i (M alpha)_i - 1| = {residual:.3g} > "
        f"tol {tol:g}).",
        "nonconvergence",
    )


def nash_weights(gram: Tensor, tol: float = 1e-7, max_iter: int = 100) -> Tensor:
    """alpha > 0 with M alpha = 1/alpha (M = G G^T [K, K]) by damped Newton on
    f(alpha) = 1/2 alpha^T M alpha - sum log alpha; raises :class:`NashMTLSolveError` on failure.

    Newton runs until the residual max_i |alpha_i (M alpha)_i - 1| reaches 1000 eps of M's dtype
    or stops decreasing (round-off on an ill-conditioned M), for at most ``max_iter`` steps; the
    solve succeeds when that residual is <= ``tol``. Well-conditioned problems end near machine
    precision whatever ``tol``."""
    k = gram.shape[0]
    dtype, device = gram.dtype, gram.device
    target = 1e3 * torch.finfo(dtype).eps
    _check_gram(gram)
    diag = gram.diagonal()
    # M alpha = 1/alpha is invariant to rescaling the tasks (g_i -> c_i g_i, alpha_i -> alpha_i / c_i):
    # solve it for the unit-diagonal D M D, D = diag(1 / ||g_i||), and return D alpha
    dscale = diag.rsqrt()
    m = dscale[:, None] * gram * dscale[None, :]
    a = torch.ones(k, dtype=dtype, device=device)
    runaway = 1e8  # alpha this large: running off to infinity (f unbounded below)
    eye = torch.eye(k, dtype=dtype, device=device)
    best = float("inf")
    strikes = 0
    for _ in range(max_iter):
        grad = m @ a - 1.0 / a
        residual = float((a * grad).abs().max())  # max_i |alpha_i (M alpha)_i - 1|
        if residual != residual or residual == float("inf") or not bool(torch.isfinite(a).all()):
            raise NashMTLSolveError(
                "Nash-MTL: non-finite iterate in the Newton solve of M alpha = 1/alpha.", "nonfinite"
            )
        if residual <= target:
            break
        hess = m + eye / (a * a)
        step, info = torch.linalg.solve_ex(hess, grad)
        step = -step
        if bool(info != 0) or not bool(torch.isfinite(step).all()):
            break  # numerically singular Hessian (alpha has run off towards infinity): diagnosed below
        decrement = float(-(grad @ step))  # lambda^2, the squared Newton decrement
        if not decrement >= 0:
            break  # not a descent direction (round-off at a numerically singular Hessian): diagnosed below
        lam = decrement**0.5
        if lam < 0.25:  # quadratic phase: the residual must keep falling, else round-off has won
            strikes = strikes + 1 if residual > 0.5 * best else 0
            if strikes >= 3:
                break
        best = min(best, residual)
        # f is self-concordant (a quadratic plus a log barrier): the damped step 1 / (1 + lambda)
        # decreases f and stays inside the Dikin ellipsoid, hence alpha > 0; for lambda < 1/4 the
        # full step converges quadratically (Nesterov, Lectures on Convex Optimization, Sec. 5.2)
        t = 1.0 if lam < 0.25 else 1.0 / (1.0 + lam)
        neg = step < 0
        if bool(neg.any()):  # positivity guard against round-off: at most 0.99 of the way to alpha_i = 0
            t = min(t, 0.99 * float((-a[neg] / step[neg]).min()))
        a_new = a + t * step
        moved = (a_new - a).abs().max()
        a = a_new
        if not bool(moved > 4 * torch.finfo(dtype).eps * a.abs().max()) or float(a.max()) > runaway:
            break  # stalled, or running off to infinity: diagnosed below
    residual = float((a * (m @ a) - 1).abs().max())
    if bool(torch.isfinite(a).all()) and bool((a > 0).all()) and residual <= tol and float(a.max()) <= runaway:
        return a * dscale
    _raise_not_converged(m, residual, tol, max_iter)


@register_weighting("nash_mtl")
class NashMTL(Weighting):
    """Nash-MTL (Navon et al. 2022).

    Args:
        num_tasks: K.
        update_every: recompute alpha every this many steps (default 1); in between, a
            loss-only step with the stored alpha.
        max_norm: clip the direction's norm to this (default 1.0, as the paper's code); 0 or None: off.
        on_failure: ``"raise"`` (default) or ``"warn"`` (warn every time, keep the previous alpha).
        tol: the residual max_i |alpha_i (M alpha)_i - 1| to reach (0 < tol < 1).
        max_iter: Newton iterations at most.
    """

    alpha: Tensor

    name: ClassVar[str] = "nash_mtl"
    needs: ClassVar[Needs] = Needs.PARAM_GRADS

    def __init__(
        self,
        num_tasks: int,
        update_every: int = 1,
        max_norm: float | None = 1.0,
        on_failure: Literal["raise", "warn"] = "raise",
        tol: float = 1e-7,
        max_iter: int = 100,
    ) -> None:
        super().__init__(num_tasks)
        if not isinstance(update_every, int) or isinstance(update_every, bool) or update_every < 1:
            raise ValueError(f"NashMTL: update_every must be a positive integer (got {update_every!r}).")
        if max_norm is not None and not (isinstance(max_norm, (int, float)) and max_norm >= 0):
            raise ValueError(f"NashMTL: max_norm must be a number >= 0 or None (got {max_norm!r}).")
        if on_failure not in ("raise", "warn"):
            raise ValueError(f"NashMTL: on_failure must be 'raise' or 'warn' (got {on_failure!r}).")
        if not (isinstance(tol, (int, float)) and 0 < tol < 1):
            raise ValueError(f"NashMTL: tol must be a number in (0, 1) (got {tol!r}).")
        if not isinstance(max_iter, int) or max_iter < 1:
            raise ValueError(f"NashMTL: max_iter must be a positive integer (got {max_iter!r}).")
        self.update_every = update_every
        self.max_norm = float(max_norm) if max_norm else 0.0
        self.on_failure = on_failure
        self.tol = float(tol)
        self.max_iter = max_iter
        self.failed_solves = 0
        self.register_buffer("alpha", torch.full((num_tasks,), float("nan")))
        self._has_alpha = False

    def has_alpha(self) -> bool:
        """Whether an alpha has been solved (or loaded from a state_dict)."""
        if not self._has_alpha:
            self._has_alpha = bool(torch.isfinite(self.alpha).all())
        return self._has_alpha

    def needs_at(self, step: int) -> Needs:
        if step % self.update_every == 0 or not self.has_alpha():
            return Needs.PARAM_GRADS
        return Needs.LOSSES

    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        if not self.has_alpha():
            raise RuntimeError(
                "NashMTL: no alpha has been solved yet; the first step must read the gradients "
                "(needs_at(step) asks for them)."
            )
        alpha = self.alpha.to(device=losses.device, dtype=losses.dtype)
        return (alpha * losses).sum(), alpha

    def _solve(self, grads: Tensor) -> Tensor:
        return nash_weights(gram_matrix(grads), tol=self.tol, max_iter=self.max_iter)

    def combine(self, grads: Tensor, losses: Tensor) -> tuple[Tensor, Tensor]:
        check_grads(grads, self.num_tasks, "NashMTL")
        try:
            alpha = self._solve(grads)
        except NashMTLSolveError as err:
            if self.on_failure == "raise" or not self.has_alpha():
                if self.on_failure == "warn":
                    raise NashMTLSolveError(
                        f"{err} (on_failure='warn', but there is no previous alpha to keep: this was the first solve).",
                        err.cause,
                    ) from err
                raise
            self.failed_solves += 1
            warnings.warn(
                f"{err} Keeping the previous alpha (failed solves so far: {self.failed_solves}).",
                RuntimeWarning,
                stacklevel=2,
            )
            alpha = self.alpha
        else:
            with torch.no_grad():
                self.alpha.copy_(alpha)
            self._has_alpha = True
        alpha = alpha.to(device=grads.device, dtype=grads.dtype)
        direction = alpha @ grads
        if self.max_norm > 0:
            norm = direction.norm()
            direction = direction * torch.clamp(self.max_norm / norm.clamp_min(torch.finfo(norm.dtype).tiny), max=1.0)
        return direction, alpha

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, update_every={self.update_every}, max_norm={self.max_norm}, "
            f"on_failure={self.on_failure!r}"
        )
