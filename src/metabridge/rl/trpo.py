"""Trust-region policy optimisation (Schulman et al., ICML 2015, App. C) on any differentiable surrogate.

Maximise the surrogate L(theta) subject to KL(theta_old, theta) <= delta by

1. g = grad L at theta_old;
2. s ~= F^{-1} g by conjugate gradient (:func:`conjugate_gradient`) on Fisher-vector
   products F v + damping v, F the Hessian of the mean KL at theta_old (the Fisher
   information there). Two ways to form F v: :func:`fisher_vector_product` takes
   grad (grad KL . v) by double backward (generic; for MAML it differentiates the
   inner step twice more), and :func:`gaussian_fisher_vector_product` uses the
   Gauss-Newton identity that is *exact* at theta_old, where grad KL = 0:
   F = J' H J, J the Jacobian of the policy's (mean, log std) outputs in theta and H the
   KL's Hessian in those outputs, diag(1/sigma^2) for the mean and 2 for log sigma.
   J v is one ``torch.func.jvp`` and J' u one reuse of a ``torch.func.vjp``: second
   derivatives of the inner step only. Both are exact at theta_old and agree to 1e-16
   in float64 (tests); on CPU they cost about the same per product (not measured in a
   stored experiment), so the choice is about memory and generality, not speed; the
   trainers use the Gauss-Newton form, whose curvature can be subsampled (``fisher_subsample``);
3. the full step beta s with beta = sqrt(2 delta / s'Fs) (the step that meets the
   quadratic KL model's bound with equality);
4. a backtracking line search on beta s, beta s r, beta s r^2, ... accepting the first
   step that improves the surrogate and keeps the *measured* KL within delta, else no
   step at all.

MAML-TRPO (Finn et al. 2017) uses the same routine with L and KL evaluated through the
inner adaptation step, so F is the Hessian of the post-adaptation KL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .policy import broadcast_log_std


def flat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def unflat_like(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    out, i = [], 0
    for t in like:
        n = t.numel()
        out.append(vector[i : i + n].view_as(t))
        i += n
    return out


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor], b: Tensor, iters: int = 10, residual_tol: float = 1e-10
) -> Tensor:
    """Approximately solve A x = b for symmetric positive definite A given x -> A x (Hestenes-Stiefel)."""
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    rr = torch.dot(r, r)
    for _ in range(iters):
        if float(rr) < residual_tol:
            break
        ap = matvec(p)
        alpha = rr / torch.dot(p, ap)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x


def fisher_vector_product(kl: Tensor, params: Sequence[Tensor], damping: float = 1e-2) -> Callable[[Tensor], Tensor]:
    """v -> (grad^2 KL) v + damping v, reusing one graph of grad KL for every product."""
    grads = torch.autograd.grad(kl, list(params), create_graph=True)
    flat_grad = flat(grads)

    def product(v: Tensor) -> Tensor:
        hv = torch.autograd.grad(torch.dot(flat_grad, v), list(params), retain_graph=True)
        return flat(hv).detach() + damping * v

    return product


def gaussian_fisher_vector_product(
    distribution: Callable[..., tuple[Tensor, Tensor]], params: Sequence[Tensor], mask: Tensor, damping: float = 1e-5
) -> Callable[[Tensor], Tensor]:
    """v -> F v + damping v for the KL of diagonal Gaussians, averaged per task then over tasks.

    ``distribution(*params)`` returns the policy's means ``[T, R, H, A]`` and log-stds
    (``[T, A]`` per task, or ``[A]`` shared) on the episodes whose steps ``mask``
    ``[T, R, H]`` marks. The KL is 1/T sum_i sum_{r,h} m KL_{i,r,h} / N_i (N_i the steps of
    task i), whose Hessian at the old policy is J'HJ with H = w / sigma^2 on the means and
    2 sum w on each log-std, w = m / (N_i T)."""
    primals = tuple(p.detach() for p in params)
    (mean, log_std), pullback = torch.func.vjp(distribution, *primals)  # type: ignore[misc]  # vjp returns (out, fn)
    t = mask.shape[0]
    w = mask / (mask.sum(dim=(1, 2), keepdim=True).clamp_min(1.0) * t)
    inv_var = torch.exp(-2 * broadcast_log_std(log_std.detach(), mean))
    w_log_std = 2 * w.sum(dim=(1, 2))[:, None] if log_std.ndim == 2 else 2 * w.sum()
    w_mean = w[..., None] * inv_var

    def product(v: Tensor) -> Tensor:
        _, (d_mean, d_log_std) = torch.func.jvp(distribution, primals, tuple(unflat_like(v, primals)))  # type: ignore[misc]
        grads = pullback((w_mean * d_mean, w_log_std * d_log_std))
        return flat(grads).detach() + damping * v

    return product


def _averaged(
    product: Callable[[Tensor], Tensor], mean_over_ranks: Callable[[Tensor], Tensor]
) -> Callable[[Tensor], Tensor]:
    """v -> mean over the ranks of ``product(v)`` (each rank's Fisher-vector product on its tasks)."""

    def averaged(v: Tensor) -> Tensor:
        return mean_over_ranks(product(v))

    return averaged


@dataclass(frozen=True)
class TRPOStats:
    """What one TRPO step did (logged by the trainers)."""

    surrogate_before: float
    surrogate_after: float
    kl: float
    step_fraction: float  # beta r^k of the accepted step (0 when the line search failed)
    backtracks: int
    accepted: bool


def trpo_step(
    params: Sequence[Tensor],
    objective: Callable[[], tuple[Tensor, Tensor]],
    max_kl: float = 1e-2,
    damping: float = 1e-5,
    cg_iters: int = 10,
    backtrack_ratio: float = 0.8,
    max_backtracks: int = 15,
    fisher: Callable[[], Callable[[Tensor], Tensor]] | None = None,
    mean_over_ranks: Callable[[Tensor], Tensor] | None = None,
) -> TRPOStats:
    """One TRPO update of ``params`` in place.

    ``objective()`` returns ``(loss, kl)``: the loss to *minimise* (the negative surrogate)
    and the mean KL(pi_old || pi_params), both as functions of the current ``params``
    (with a graph to them). It is called once with gradients for the step direction and
    once per line-search trial without.

    Data parallelism: ``mean_over_ranks`` (e.g. :meth:`metabridge.collectives.RankMean.mean`)
    turns each rank's mean over its shard of the tasks into the mean over all tasks. When
    every rank holds T/W tasks, the loss, the KL and the Fisher matrix are means over tasks,
    so L = (1/W) sum_r L_r, KL = (1/W) sum_r KL_r and F v = (1/W) sum_r F_r v (damping is
    the same on every rank): one all-reduce turns the gradient (with the loss), each
    Fisher-vector product inside conjugate gradient and each line-search candidate's
    (loss, KL) into those of the single-process step on the union of the tasks. Every rank
    then runs the same conjugate gradient on the same numbers, takes the same decisions and
    the same step."""
    params = list(params)
    loss, kl = objective()
    grads = torch.autograd.grad(loss, params, retain_graph=fisher is None)
    g = flat(grads).detach()
    local_fvp = fisher() if fisher is not None else fisher_vector_product(kl, params, damping)
    fvp = local_fvp
    if mean_over_ranks is not None:
        g_loss = mean_over_ranks(torch.cat([g, loss.detach().reshape(1).to(g.dtype)]))
        g, loss = g_loss[:-1], g_loss[-1].to(loss.dtype)
        fvp = _averaged(local_fvp, mean_over_ranks)
    step_dir = conjugate_gradient(fvp, -g, cg_iters)
    shs = 0.5 * torch.dot(step_dir, fvp(step_dir))
    before = float(loss.detach())
    if not torch.isfinite(shs) or float(shs) <= 0:
        return TRPOStats(before, before, 0.0, 0.0, 0, False)
    full_step = step_dir * torch.sqrt(max_kl / shs)  # 1/2 s'Fs beta^2 = max_kl
    old = [p.detach().clone() for p in params]
    frac = 1.0
    with torch.no_grad():
        for k in range(max_backtracks):
            for p, p0, d in zip(params, old, unflat_like(full_step, params)):
                p.copy_(p0 + frac * d)
            new_loss, new_kl = objective()
            if mean_over_ranks is not None:
                new_loss, new_kl = mean_over_ranks(torch.stack([new_loss.detach(), new_kl.detach().to(new_loss.dtype)]))
            new_loss_f, new_kl_f = float(new_loss.detach()), float(new_kl.detach())
            if new_loss_f < before and new_kl_f <= max_kl and torch.isfinite(new_loss):
                return TRPOStats(before, new_loss_f, new_kl_f, frac, k, True)
            frac *= backtrack_ratio
        for p, p0 in zip(params, old):
            p.copy_(p0)
    return TRPOStats(before, before, 0.0, 0.0, max_backtracks, False)
