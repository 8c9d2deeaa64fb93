r"""DRS versus one-step MAML in meta-linear regression, in closed form.

Reference: K. Gao and O. Sener, "Modeling and Optimization Trade-off in
Meta-learning", NeurIPS 2020, Sec. 5 (meta-linear regression). The task family is
:class:`metabridge.tasks.linear_regression.LinearRegressionFamily`:
``Q = U diag(t) U^T`` (U Haar on O(p), ``t_j ~ U(0, beta)``), ``x ~ N(0, Q)``,
``y = x^T w_tau + eps``, ``eps ~ N(0, sigma^2)``,
``w_tau = P(Q) w_bar + sigma_w xi`` with ``P(Q) = a I + b Q``, ``a = 1 - kappa``,
``b = 2 kappa / beta`` (``kappa = 0``: ``w_tau ~ N(w_bar, sigma_w^2 I)``).

All derivations below are ours; equation tags (E1)...(E9) are referenced from the
function docstrings.

1. Estimators
-------------
Training data: M tasks, task i has inner points ``X_i1`` (N x p), ``y_i1`` and
outer points ``X_i2``, ``y_i2``.

**DRS** (domain randomised search = joint training) ignores the split and solves
pooled least squares over all 2NM points::

    w_DRS = (sum_i X_i^T X_i)^{-1} sum_i X_i^T y_i,   X_i = [X_i1; X_i2]      (E1)

**One-step MAML.** The inner loss is ``l_1(w) = ||X_1 w - y_1||^2 / (2N)`` (half
mean squared error, so that its gradient is ``X_1^T (X_1 w - y_1) / N``). One step
of size alpha gives::

    w' = w - (alpha/N) X_1^T (X_1 w - y_1) = A w + c,
    A = I - (alpha/N) X_1^T X_1,   c = (alpha/N) X_1^T y_1.                  (E2)

The outer loss ``sum_i ||X_i2 (A_i w + c_i) - y_i2||^2`` is an ordinary least
squares problem in w with design ``X_i2 A_i`` and target ``y_i2 - X_i2 c_i``;
setting its gradient to zero gives the weighted least squares solution::

    w_MAML = (sum_i A_i X_i2^T X_i2 A_i)^{-1} sum_i A_i X_i2^T (y_i2 - X_i2 c_i)   (E3)

(A_i is symmetric). With alpha = 0, ``A_i = I`` and ``c_i = 0``: (E3) is ordinary
least squares on the outer points only, and (E1) is ordinary least squares on all
points (it does not depend on alpha at all).

2. Exact expected test loss
---------------------------
A fresh test task tau = (Q, w_tau) gives N support points ``(X, y)``; an estimator
w is adapted by one step (E2) with step alpha (alpha = 0: no adaptation, the
"before" loss). The test loss is the population squared error of the adapted
weights on that task, averaged over everything random at test time::

    F_alpha(w) = E_{tau, X, eps, x, eps'} (x^T w' - y)^2
               = E[(w' - w_tau)^T Q (w' - w_tau)] + sigma^2.                 (E4)

With ``S = X^T X / N`` and ``d = w - w_tau``:
``w' - w_tau = B d + (alpha/N) X^T eps``, ``B = I - alpha S``. The noise enters
linearly and has mean zero, so::

    F_alpha(w) = E[d^T B Q B d] + (alpha^2 sigma^2 / N) E tr(Q^2) + sigma^2.   (E5)

*Expectation over the support inputs given Q.* ``E[S] = Q`` and, by Isserlis'
theorem ``E[x x^T Q x x^T] = 2 Q^3 + tr(Q^2) Q`` for ``x ~ N(0, Q)``, so::

    K(Q) := E[B Q B | Q] = Q - 2 alpha Q^2
                           + alpha^2 ((N+1)/N Q^3 + tr(Q^2) Q / N).          (E6)

*Expectation over the task.* Haar invariance gives ``E_U[U D U^T] = (tr D / p) I``
for any diagonal D independent of U. Every matrix met below is a polynomial in Q
times powers of the rotation-invariant scalar ``tr(Q^2)``, hence, with
``mu_k = E[t^k] = beta^k / (k+1)`` and
``nu_m = E[tr(Q^2) t^m]``-per-coordinate ``= mu_{m+2} + (p-1) mu_2 mu_m``::

    k_j := E[K(Q) Q^j] / I = mu_{j+1} - 2 alpha mu_{j+2}
                             + alpha^2 ((N+1)/N mu_{j+3} + nu_{j+1} / N).    (E7)

Because ``w_tau = P(Q) w_bar + sigma_w xi`` with xi independent of (Q, X)::

    F_alpha(w) = k_0 ||w||^2 - 2 (a k_0 + b k_1) <w, w_bar>
                 + (a^2 k_0 + 2ab k_1 + b^2 k_2) ||w_bar||^2
                 + sigma_w^2 p k_0 + alpha^2 sigma^2 p mu_2 / N + sigma^2
               = k_0 ||w - r w_bar||^2 + F_alpha^min,
    r = (a k_0 + b k_1) / k_0.                                               (E8)

So the exact expected loss is isotropic around ``r w_bar``; at alpha = 0,
``k_j = mu_{j+1}``. Every step above is an exact expectation (no approximation);
:func:`monte_carlo_test_loss` checks (E8) by sampling >= 10^4 test tasks.

A consequence worth stating: with ``kappa = 0`` (b = 0) the centre is ``r = 1``
for every alpha, so ``F_0`` and ``F_alpha`` rank any two estimators identically:
before and after the test-time step, P(MAML beats DRS) is the same number.
With ``kappa != 0`` the centres differ and the ranking can flip.

3. Modeling and optimization error (Gao & Sener, Sec. 3)
--------------------------------------------------------
The meta-learning goal is the post-adaptation loss ``F_alpha``. Let ``w*_alg`` be
the solution of an algorithm's training objective with unlimited data (M -> inf,
N fixed): by the law of large numbers applied to (E1) and (E3),
``w*_DRS = argmin F_0 = r_0 w_bar`` and ``w*_MAML = argmin F_alpha = r_alpha w_bar``
(the MAML limit uses ``E[A Q A w_tau] = E[K(Q) P(Q)] w_bar``, the same moments as
(E7) when the test-time N and alpha equal the training ones). Then::

    modeling error      e_mod(alg) = F_alpha(w*_alg) - min_w F_alpha(w)
                                   = k_0 (r_alg - r_alpha)^2 ||w_bar||^2        (E9)
    optimization error  e_opt(alg) = E_train F_alpha(w_hat_alg) - F_alpha(w*_alg)
    total excess        e_mod + e_opt = E_train F_alpha(w_hat_alg) - min F_alpha

so ``e_mod(MAML) = 0`` and ``e_mod(DRS) >= 0`` (zero when kappa = 0), while
``e_opt`` is the price of solving the objective from finitely many samples;
MAML pays more of it because its design ``X2 A`` is noisier and it fits on N
instead of 2N points per task. The expectation over training sets of a function
of an inverse random Gram matrix has no closed form here, so ``e_opt`` is
estimated by Monte Carlo over independent training sets (the inner expectation
over test tasks stays exact, via (E8)).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from metabridge.tasks.batch import TaskBatch
from metabridge.tasks.linear_regression import LinearRegressionFamily

__all__ = [
    "ols",
    "drs_estimator",
    "maml_estimator",
    "fit_drs",
    "fit_maml",
    "adapt_one_step",
    "QuadraticLoss",
    "expected_loss_form",
    "expected_test_loss",
    "monte_carlo_test_loss",
    "ErrorSplit",
    "error_split",
    "sample_estimators",
]


# ---------------------------------------------------------------------- estimators
def _check_xy(x: Tensor, y: Tensor) -> None:
    if x.shape[:-1] != y.shape:
        raise ValueError(
            f"inputs {tuple(x.shape)} and targets {tuple(y.shape)} do not pair up: "
            "expected x [..., n, p] and y [..., n] (squeeze a trailing target dim of 1)."
        )


def ols(x: Tensor, y: Tensor) -> Tensor:
    """Ordinary least squares ``argmin_w ||x w - y||^2`` via normal equations; x ``[..., n, p]``, y ``[..., n]``."""
    _check_xy(x, y)
    gram = x.transpose(-1, -2) @ x
    rhs = (x.transpose(-1, -2) @ y[..., None])[..., 0]
    return torch.linalg.solve(gram, rhs)


def drs_estimator(x: Tensor, y: Tensor) -> Tensor:
    """Pooled least squares over all tasks and points, (E1).

    Args:
        x: ``[..., M, n, p]`` inputs of M tasks (inner and outer points together).
        y: ``[..., M, n]`` targets.
    Returns:
        ``[..., p]``.
    """
    _check_xy(x, y)
    gram = (x.transpose(-1, -2) @ x).sum(-3)
    rhs = (x.transpose(-1, -2) @ y[..., None])[..., 0].sum(-2)
    return torch.linalg.solve(gram, rhs)


def maml_estimator(x1: Tensor, y1: Tensor, x2: Tensor, y2: Tensor, alpha: float) -> Tensor:
    """Exact minimiser of the one-step MAML objective, weighted least squares (E3).

    ``sum_i ||X_i2 (w - (alpha/N) X_i1^T (X_i1 w - y_i1)) - y_i2||^2``; x1 ``[..., M, N, p]``,
    y1 ``[..., M, N]``, x2/y2 the outer points (any count). Returns ``[..., p]``.
    """
    _check_xy(x1, y1)
    _check_xy(x2, y2)
    n = x1.shape[-2]
    p = x1.shape[-1]
    eye = torch.eye(p, dtype=x1.dtype, device=x1.device)
    a = eye - (alpha / n) * (x1.transpose(-1, -2) @ x1)  # [..., M, p, p]
    c = (alpha / n) * (x1.transpose(-1, -2) @ y1[..., None])[..., 0]  # [..., M, p]
    design = x2 @ a  # [..., M, N2, p]
    target = y2 - (x2 @ c[..., None])[..., 0]
    gram = (design.transpose(-1, -2) @ design).sum(-3)
    rhs = (design.transpose(-1, -2) @ target[..., None])[..., 0].sum(-2)
    return torch.linalg.solve(gram, rhs)


def fit_drs(batch: TaskBatch) -> Tensor:
    """DRS on a :class:`TaskBatch` (support and query pooled); returns ``[p]``."""
    x = torch.cat([batch.support_x, batch.query_x], dim=1)
    y = torch.cat([batch.support_y, batch.query_y], dim=1)[..., 0]
    return drs_estimator(x, y)


def fit_maml(batch: TaskBatch, alpha: float) -> Tensor:
    """One-step MAML on a :class:`TaskBatch` (support = inner, query = outer); returns ``[p]``."""
    return maml_estimator(batch.support_x, batch.support_y[..., 0], batch.query_x, batch.query_y[..., 0], alpha)


def adapt_one_step(w: Tensor, x: Tensor, y: Tensor, alpha: float) -> Tensor:
    """One gradient step on ``||x w - y||^2 / (2n)``, (E2); w ``[..., p]``, x ``[..., n, p]``, y ``[..., n]``."""
    _check_xy(x, y)
    n = x.shape[-2]
    resid = (x @ w[..., None])[..., 0] - y
    return w - (alpha / n) * (x.transpose(-1, -2) @ resid[..., None])[..., 0]


# ---------------------------------------------------------------------- exact loss
def _mu(k: int, beta: float) -> float:
    """``E[t^k]`` for ``t ~ U(0, beta)``."""
    return beta**k / (k + 1)


def _nu(m: int, beta: float, p: int) -> float:
    """Per-coordinate ``E[tr(Q^2) Q^m]``: ``mu_{m+2} + (p-1) mu_2 mu_m``."""
    return _mu(m + 2, beta) + (p - 1) * _mu(2, beta) * _mu(m, beta)


def _curvature_moment(j: int, family: LinearRegressionFamily, alpha: float, k_shot: int) -> float:
    """``k_j`` of (E7)."""
    b, p, n = family.beta, family.dim, k_shot
    return _mu(j + 1, b) - 2.0 * alpha * _mu(j + 2, b) + alpha**2 * ((n + 1) / n * _mu(j + 3, b) + _nu(j + 1, b, p) / n)


@dataclass(frozen=True)
class QuadraticLoss:
    """``F(w) = scale * ||w - center * w_bar||^2 + minimum``, the exact expected loss (E8)."""

    scale: float
    center: float
    minimum: float
    w_bar: Tensor

    def __call__(self, w: Tensor) -> Tensor:
        """Evaluate on ``w`` ``[..., p]``."""
        wb = self.w_bar.to(w.dtype)
        return self.scale * ((w - self.center * wb) ** 2).sum(-1) + self.minimum

    @property
    def argmin(self) -> Tensor:
        return self.center * self.w_bar


def expected_loss_form(family: LinearRegressionFamily, alpha: float, k_shot: int) -> QuadraticLoss:
    """The exact expected test loss after one step of size ``alpha`` on ``k_shot`` points, (E8).

    ``alpha = 0`` gives the loss before adaptation.
    """
    if k_shot <= 0:
        raise ValueError(f"k_shot must be positive (got {k_shot}).")
    a = 1.0 - family.coupling
    b = 2.0 * family.coupling / family.beta
    k0, k1, k2 = (_curvature_moment(j, family, alpha, k_shot) for j in range(3))
    w_bar = family.mean_weights(torch.float64)
    wb2 = float((w_bar**2).sum())
    p = family.dim
    center = (a * k0 + b * k1) / k0
    const = (
        (a * a * k0 + 2 * a * b * k1 + b * b * k2) * wb2
        + family.weight_std**2 * p * k0
        + alpha**2 * family.noise_std**2 * p * _mu(2, family.beta) / k_shot
        + family.noise_std**2
    )
    minimum = const - k0 * center**2 * wb2
    return QuadraticLoss(scale=k0, center=center, minimum=minimum, w_bar=w_bar)


def expected_test_loss(w: Tensor, family: LinearRegressionFamily, alpha: float, k_shot: int) -> Tensor:
    """Exact ``F_alpha(w)`` of (E4)/(E8) for estimators ``w`` ``[..., p]``."""
    return expected_loss_form(family, alpha, k_shot)(w)


def monte_carlo_test_loss(
    w: Tensor,
    family: LinearRegressionFamily,
    alpha: float,
    k_shot: int,
    num_tasks: int,
    generator: torch.Generator,
    query_points: int | None = None,
    chunk: int = 4096,
) -> tuple[Tensor, Tensor]:
    """Monte Carlo estimate of (E4) over ``num_tasks`` fresh test tasks; the independent check of (E8).

    Every estimator in ``w`` ``[K, p]`` is scored on the same tasks. Each task draws
    its own support set and is adapted with :func:`adapt_one_step`. With
    ``query_points=None`` the per-task loss is the conditional expectation
    ``(w' - w_tau)^T Q (w' - w_tau) + sigma^2`` (lower variance); otherwise it is the
    mean squared error on that many sampled query points (fully sampled).

    Returns:
        ``(mean [K], standard_error [K])``.
    """
    if w.dim() == 1:
        w = w[None]
    w = w.to(torch.float64)
    per_task: list[Tensor] = []
    left = num_tasks
    while left > 0:
        t = min(chunk, left)
        left -= t
        params, _ = family.sample_params(t, generator, torch.float64)
        n_q = query_points or 0
        x, y = family.sample_data(params, k_shot + n_q, generator)
        xs, ys = x[:, :k_shot], y[:, :k_shot]
        # adapted weights [T, K, p]
        wk = w[None].expand(t, -1, -1)
        adapted = adapt_one_step(wk, xs[:, None], ys[:, None], alpha) if alpha != 0.0 else wk
        if query_points is None:
            d = adapted - params.weights[:, None, :]
            qd = d @ params.covariance  # [T, K, p]
            loss = (qd * d).sum(-1) + family.noise_std**2
        else:
            xq, yq = x[:, k_shot:], y[:, k_shot:]
            pred = adapted @ xq.transpose(-1, -2)  # [T, K, n_q]
            loss = ((pred - yq[:, None, :]) ** 2).mean(-1)
        per_task.append(loss)
    losses = torch.cat(per_task, 0)
    return losses.mean(0), losses.std(0) / losses.shape[0] ** 0.5


# ---------------------------------------------------------------------- error split
@dataclass
class ErrorSplit:
    """Gao & Sener's split (E9) of one algorithm's post-adaptation error (see module docstring)."""

    algorithm: str
    modeling: float
    optimization: float
    optimization_stderr: float
    total_excess: float
    min_loss: float


def error_split(
    family: LinearRegressionFamily,
    num_train_tasks: int,
    n_per_split: int,
    alpha: float,
    trials: int,
    generator: torch.Generator,
) -> dict[str, ErrorSplit]:
    """Modeling / optimization split (E9) for DRS and MAML, optimization part by Monte Carlo.

    ``trials`` independent training sets of ``num_train_tasks`` tasks x (N + N) points.
    """
    post = expected_loss_form(family, alpha, n_per_split)
    pre = expected_loss_form(family, 0.0, n_per_split)
    w_drs, w_maml = sample_estimators(family, num_train_tasks, n_per_split, alpha, trials, generator)
    out: dict[str, ErrorSplit] = {}
    for name, w_hat, center in (("drs", w_drs, pre.center), ("maml", w_maml, post.center)):
        w_star = center * post.w_bar
        f_star = float(post(w_star))
        losses = post(w_hat)
        opt = losses - f_star
        out[name] = ErrorSplit(
            algorithm=name,
            modeling=f_star - post.minimum,
            optimization=float(opt.mean()),
            optimization_stderr=float(opt.std() / trials**0.5),
            total_excess=float(losses.mean()) - post.minimum,
            min_loss=post.minimum,
        )
    return out


def sample_estimators(
    family: LinearRegressionFamily,
    num_train_tasks: int,
    n_per_split: int,
    alpha: float,
    trials: int,
    generator: torch.Generator,
    max_elements: int = 4_000_000,
) -> tuple[Tensor, Tensor]:
    """Fit DRS and MAML on ``trials`` independent training sets; returns two ``[trials, p]`` tensors.

    Trials are batched (a leading dimension), in chunks of at most ``max_elements``
    input scalars, so no Python loop runs over tasks.
    """
    m, n, p = num_train_tasks, n_per_split, family.dim
    if m * n < p:
        raise ValueError(
            f"M * N = {m} * {n} < p = {p}: the MAML normal equations are singular; "
            "use more tasks or more points per task."
        )
    per_trial = m * 2 * n * p
    step = max(1, max_elements // per_trial)
    drs, maml = [], []
    done = 0
    while done < trials:
        r = min(step, trials - done)
        done += r
        params, _ = family.sample_params(r * m, generator, torch.float64)
        x, y = family.sample_data(params, 2 * n, generator)
        x = x.reshape(r, m, 2 * n, p)
        y = y.reshape(r, m, 2 * n)
        drs.append(drs_estimator(x, y))
        maml.append(maml_estimator(x[:, :, :n], y[:, :, :n], x[:, :, n:], y[:, :, n:], alpha))
    return torch.cat(drs), torch.cat(maml)
