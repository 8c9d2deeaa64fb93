"""Training-mode batch norm with a closed-form double backward, for second-order MAML.

Why: second-order MAML (Finn et al. 2017, Eq. 1 differentiated through the inner
update) differentiates the inner loop's backward pass, so every batch norm is
differentiated twice. ATen's ``F.batch_norm`` backward is one fused kernel, but its
double backward (``batchnorm_double_backward``) is a composite of roughly forty
element-wise operators over full activation tensors, and on CPU those memory-bound
operators were the largest non-convolution cost of a meta-iteration (README,
"share of FLOP floor"). Here the double backward is derived by hand and reduced to
five per-channel reductions and five fused multiply-adds over activation tensors.

Notation, per channel over the ``n = N*H*W`` elements: ``mu``, ``s = (var + eps)^-1/2``
(biased variance), ``xh = (x - mu) * s``, forward ``y = gamma * xh + beta``. The
backward for an incoming gradient ``g`` is (ATen's fused kernel, unchanged)::

    dx = gamma * s * (g - mean(g) - xh * mean(g * xh)),  dgamma = sum(g * xh),  dbeta = sum(g)

and the double backward takes cotangents ``u`` (of ``dx``), ``v`` (of ``dgamma``), ``w``
(of ``dbeta``) to the gradients with respect to ``g``, ``gamma`` and ``x``::

    d/dg     = gamma * s * (u - mean(u) - xh * mean(u * xh)) + v * xh + w
    d/dgamma = s * S,   S = sum(u * g) - mean(g) * sum(u) - mean(g * xh) * sum(u * xh)
    d/dx     = s * (P - mean(P) - xh * mean(P * xh)) - gamma * S * s^2 * xh / n,
               P = -gamma * s * mean(g * xh) * u + (v - gamma * s * mean(u * xh)) * g

(``P`` is the partial derivative with respect to ``xh`` at fixed ``s``; the last term is
the explicit dependence on ``s``, ``ds/dx = -s^2 * xh / n``). Every mean and ``P``'s two
moments are per-channel combinations of ``sum(u)``, ``sum(g)``, ``sum(u xh)``,
``sum(g xh)`` and ``sum(u g)``, so each output is an ``addcmul`` chain.

The double backward is itself made of differentiable operators, so a third derivative
(``create_graph=True`` in the outer backward) is autograd's derivative of it; only then
are the batch statistics recomputed with graph (the kernel's saved ones carry none).
Exactness: ``tests/test_fast_kernels_speed.py`` checks the first, second and third
derivatives against finite differences (``gradcheck`` / ``gradgradcheck``, float64) and
the first two against ``F.batch_norm``'s own (torch 2.13's third derivative of
``F.batch_norm`` fails the finite-difference check, so it is no reference).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

_DIMS = (0, 2, 3)


def _c(t: Tensor) -> Tensor:
    """Per-channel ``[C]`` -> broadcastable ``[1, C, 1, 1]``."""
    return t.view(1, -1, 1, 1)


class _BatchNormBackward(torch.autograd.Function):
    """``(g, x, gamma) -> (dx, dgamma, dbeta)``: ATen's kernel forward, the closed form back."""

    @staticmethod
    def forward(
        ctx: Any, g: Tensor, x: Tensor, gamma: Tensor, mean: Tensor, invstd: Tensor, eps: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        dx, dgamma, dbeta = torch.ops.aten.native_batch_norm_backward(
            g, x, gamma, None, None, mean, invstd, True, eps, [True, True, True]
        )
        ctx.save_for_backward(g, x, gamma, mean, invstd)
        ctx.eps = eps
        return dx, dgamma, dbeta

    @staticmethod
    def backward(
        ctx: Any, u: Tensor | None, v: Tensor | None, w: Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor, None, None, None]:
        g, x, gamma, mean, invstd = ctx.saved_tensors
        n = x.numel() // x.shape[1]
        if torch.is_grad_enabled() and x.requires_grad:
            # a third derivative was asked for (create_graph here): the saved statistics
            # came from a kernel and carry no graph, so recompute them differentiably
            var, mean = torch.var_mean(x, dim=_DIMS, unbiased=False)
            invstd = torch.rsqrt(var + ctx.eps)
        u = torch.zeros_like(x) if u is None else u
        v = torch.zeros_like(gamma) if v is None else v
        w = torch.zeros_like(gamma) if w is None else w
        xh = torch.addcmul(_c(-mean * invstd), x, _c(invstd))
        su, sg = u.sum(_DIMS), g.sum(_DIMS)
        sux, sgx, sug = (u * xh).sum(_DIMS), (g * xh).sum(_DIMS), (u * g).sum(_DIMS)
        gs = gamma * invstd
        mean_gx, mean_ux = sgx / n, sux / n

        grad_g = torch.addcmul(_c(w - gs * su / n), u, _c(gs)).addcmul_(xh, _c(v - gs * mean_ux))

        big_s = sug - (sg / n) * su - mean_gx * sux
        grad_gamma = big_s * invstd

        alpha = -gs * mean_gx  # P = alpha * u + beta * g
        beta = v - gs * mean_ux
        mean_p = (alpha * su + beta * sg) / n
        mean_px = (alpha * sux + beta * sgx) / n
        coef_xh = -invstd * mean_px - gamma * big_s * invstd * invstd / n
        grad_x = torch.addcmul(_c(-invstd * mean_p), u, _c(invstd * alpha))
        grad_x.addcmul_(g, _c(invstd * beta)).addcmul_(xh, _c(coef_xh))
        return grad_g, grad_x, grad_gamma, None, None, None


class _BatchNorm(torch.autograd.Function):
    """Forward and first backward by ATen's kernels; the backward is :class:`_BatchNormBackward`."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, gamma: Tensor, beta: Tensor, eps: float) -> Tensor:
        y, mean, invstd = torch.native_batch_norm(x, gamma, beta, None, None, True, 0.0, eps)
        ctx.save_for_backward(x, gamma, mean, invstd)
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        x, gamma, mean, invstd = ctx.saved_tensors
        dx, dgamma, dbeta = _BatchNormBackward.apply(g, x, gamma, mean, invstd, ctx.eps)
        return dx, dgamma, dbeta, None


def batch_norm_train(x: Tensor, gamma: Tensor, beta: Tensor, eps: float = 1e-5) -> Tensor:
    """``F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)`` for ``[N, C, H, W]``.

    Same values and first and second derivatives (module docstring), with a faster
    closed-form double backward. Falls back to ``F.batch_norm`` for anything but a
    contiguous 4-d NCHW input (channels-last layouts and other ranks), where
    the closed form has not been measured.
    """
    if x.dim() != 4 or not x.is_contiguous():
        return F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)
    return _BatchNorm.apply(x, gamma, beta, eps)
