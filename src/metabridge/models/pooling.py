"""2x2 max-pooling (stride 2) for contiguous NCHW tensors, twice differentiable, faster on CPU.

Why: on CPU, ATen's ``max_pool2d_with_indices`` kernel for a contiguous NCHW input is a
scalar loop over output pixels, while its channels-last kernel is vectorized over
channels. For the forward of Conv-4's first pooling (64 channels at 28x28) the
channels-last kernel plus the layout copy is far faster than the NCHW kernel, and that
pooling is the largest non-convolution operator of a second-order MAML meta-iteration
(not measured in a stored experiment). The channels-last *backward* and *double
backward*, though, are slower than the NCHW ones (and return channels-last gradients
that slow down the batch-norm backward that follows), so only the forward changes layout:

* forward: copy ``x`` to channels-last, run the channels-last pooling kernel, and bring
  the (4x smaller) output and argmax indices back to contiguous NCHW;
* backward: ATen's NCHW ``max_pool2d_with_indices_backward`` with those indices.

Exactness: both kernels scan each 2x2 window in the same order (row by row) and keep
the *first* maximum (a later element must be strictly greater), and indices are
``h * W + w`` within each channel plane in both layouts, so values, indices and
therefore gradients are bit-identical to ``F.max_pool2d(x, 2)``, ties included (ties are
common in the first block, where constant image regions give equal activations).
The backward is made of differentiable ATen operators: autograd differentiates it for
``create_graph=True`` (second-order MAML) exactly as it differentiates
``F.max_pool2d``'s own backward (a gather of the incoming gradient at the indices; the
derivative with respect to the input is zero almost everywhere).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

_K = [2, 2]


class _MaxPool2x2(torch.autograd.Function):
    """``F.max_pool2d(x, 2)`` with a channels-last forward kernel (module docstring)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        y, idx = torch.ops.aten.max_pool2d_with_indices(x.contiguous(memory_format=torch.channels_last), _K, _K)
        idx = idx.contiguous()
        ctx.save_for_backward(idx)
        ctx.in_shape = x.shape
        return y.contiguous()

    @staticmethod
    def backward(ctx: Any, gy: Tensor) -> Tensor:
        (idx,) = ctx.saved_tensors
        # only the shape and (contiguous) memory format of `self` are read by the kernel
        like = gy.new_empty(ctx.in_shape)
        return torch.ops.aten.max_pool2d_with_indices_backward(
            gy.contiguous(), like, _K, _K, [0, 0], [1, 1], False, idx
        )


def max_pool2x2(x: Tensor) -> Tensor:
    """``F.max_pool2d(x, 2)``, identical in value and in first and second derivatives.

    Takes the fast route for a 4-d contiguous NCHW CPU tensor; anything else (channels-last
    input, CUDA, 3-d input) goes to ``F.max_pool2d`` directly.
    """
    if (
        x.device.type != "cpu"
        or x.dim() != 4
        or not x.is_contiguous()
        or x.is_contiguous(memory_format=torch.channels_last)
    ):
        return F.max_pool2d(x, 2)
    return _MaxPool2x2.apply(x)
