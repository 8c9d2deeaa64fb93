"""Conv-4's first convolution (few input channels, input that needs no gradient) with a
GEMM-shaped, twice-differentiable weight gradient.

Why: for a 1-channel 28x28 input, ATen/oneDNN's ``convolution_backward`` for the weight
reaches only a small fraction of the rate of a large matmul on CPU: it is the least
efficient convolution of a second-order MAML meta-iteration there. The same gradient as
one batched matrix product over im2col patches is much faster, even counting
the patches (not measured in a stored experiment).

The forward is unchanged (``F.conv2d``). With ``cols = unfold(x)`` (3x3 patches,
``[B, G*C_in*9, H*W]``) and ``gy`` the output gradient, the weight gradient of group g is

    dL/dW_g = sum_b  gy[b, g] @ cols[b, g]^T        ([C_out, H*W] @ [H*W, C_in*9]),

and the bias gradient is ``gy`` summed over batch and pixels; the input gradient is not
needed (the images are data). Both are written with differentiable operators (``bmm``,
``sum``), so ``create_graph=True`` (second-order MAML's inner steps) records them and the
outer backward differentiates them exactly: the derivative of ``dL/dW`` with respect to
``gy`` in a direction ``V`` is ``bmm(V, cols)``, i.e. the convolution of ``x`` with ``V``,
again a GEMM; ``dL/dW`` does not depend on ``W``. The result equals ATen's to float
round-off (summation order); ``tests/test_fast_kernels_speed.py`` checks values, first
and second derivatives in float64.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

#: the fast route is taken for at most this many input channels per group
MAX_CHANNELS_PER_GROUP = 4


class _FirstConv3x3(torch.autograd.Function):
    """3x3 convolution, padding 1, ``groups`` groups, input without gradient (module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, groups: int) -> Tensor:
        ctx.save_for_backward(x)
        ctx.groups = groups
        ctx.weight_shape = weight.shape
        return F.conv2d(x, weight, bias, padding=1, groups=groups)

    @staticmethod
    def backward(ctx: Any, gy: Tensor) -> tuple[None, Tensor | None, Tensor | None, None]:
        (x,) = ctx.saved_tensors
        g = ctx.groups
        b, c_out_all, h, w = gy.shape
        grad_w = grad_b = None
        if ctx.needs_input_grad[1]:
            cols = F.unfold(x, 3, padding=1)  # [B, G*C_in*9, H*W]: (group, c_in, dy, dx) per row
            per_group = gy.reshape(b * g, c_out_all // g, h * w)
            prods = torch.bmm(per_group, cols.view(b * g, -1, h * w).transpose(1, 2))  # [B*G, C_out, C_in*9]
            grad_w = prods.view(b, g * prods.shape[1], prods.shape[2]).sum(0).view(ctx.weight_shape)
        if ctx.needs_input_grad[2]:
            grad_b = gy.sum((0, 2, 3))
        return None, grad_w, grad_b, None


def first_conv3x3(x: Tensor, weight: Tensor, bias: Tensor, groups: int = 1) -> Tensor:
    """``F.conv2d(x, weight, bias, padding=1, groups=groups)`` for a 3x3 ``weight``.

    Takes the GEMM-shaped backward (module docstring) on CPU when ``x`` needs no gradient
    and has at most :data:`MAX_CHANNELS_PER_GROUP` channels per group;
    otherwise it is ``F.conv2d`` itself.
    """
    fast = (
        x.device.type == "cpu"
        and not x.requires_grad
        and x.dim() == 4
        and weight.shape[-2:] == (3, 3)
        and x.shape[1] // groups <= MAX_CHANNELS_PER_GROUP
    )
    if not fast:
        return F.conv2d(x, weight, bias, padding=1, groups=groups)
    return _FirstConv3x3.apply(x, weight, bias, groups)
