"""Conv-4 run on a whole meta-batch at once, with different weights for every task.

MAML's inner loop (Finn et al. 2017, Eq. 1) gives each task i its own weights
phi_i, so a meta-batch of T tasks is T different networks. Instead of a loop over
tasks (or ``torch.func.vmap``, which on CPU is slower than the loop:
experiments/speed_vs_peers, its execution variants), the T networks are run as one:

* ``"grouped"``: the tasks are folded into the channels. Activations are laid out
  ``[B, T*C, H, W]`` and every convolution is one grouped convolution with
  ``groups=T`` and weight ``[T*C_out, C_in, 3, 3]``: group t sees only task t's
  channels and task t's filters. Per-task batch norm (statistics of each task's own
  batch, MAML's transductive convention) is then plain batch norm over ``T*C``
  channels, and ReLU and max-pooling are unchanged.
* ``"im2col"``: activations ``[T, B, H, W, C]`` (channels last); a 3x3 convolution
  is nine shifted views concatenated into patches ``[T, B*H*W, 9*C_in]`` and one
  batched matrix product with ``[T, 9*C_in, C_out]``.
* ``"loop"``: a plain per-task loop of ``F.conv2d`` (the reference).

All three compute the same function (to float64 round-off); which one is fastest is
a measurement (experiments/speed_vs_peers, its execution variants). Parameters are
addressed by ``Conv4``'s names (``body.blocks.{i}.0.weight`` ...); each tensor either
carries a leading task dimension (per task) or not (shared by every task, as ANIL's
body is).
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .batch_norm import batch_norm_train
from .conv4 import Conv4
from .first_conv import first_conv3x3
from .pooling import max_pool2x2

ConvBackend = Literal["grouped", "im2col", "loop"]
BatchNormKernel = Literal["auto", "closed_form", "aten"]
BN_EPS = 1e-5
_BLOCKS = 4


def supports_batched_conv4(model: nn.Module) -> bool:
    """True for a :class:`Conv4` whose batch norm keeps no running statistics."""
    if not isinstance(model, Conv4):
        return False
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    return all(not bn.track_running_stats for bn in bns) and len(list(model.buffers())) == 0


def _per_task(p: Tensor, t: int, ndim: int) -> Tensor:
    """``p`` with a leading task dimension of size ``t`` (a broadcast view if shared)."""
    return p if p.dim() == ndim + 1 else p.unsqueeze(0).expand(t, *p.shape)


def _head(params: dict[str, Tensor], feats: Tensor) -> Tensor:
    """Per-task linear head ``[T, B, D] -> [T, B, N]`` as one batched product."""
    t = feats.shape[0]
    w = _per_task(params["head.weight"], t, 2)
    b = _per_task(params["head.bias"], t, 1)
    return torch.baddbmm(b.unsqueeze(1), feats, w.transpose(1, 2))


def _grouped_body(params: dict[str, Tensor], x: Tensor, channels_last: bool, batch_norm: BatchNormKernel) -> Tensor:
    t, b = x.shape[:2]
    h = x.transpose(0, 1).reshape(b, t * x.shape[2], *x.shape[3:])
    if channels_last:
        h = h.contiguous(memory_format=torch.channels_last)
    for i in range(_BLOCKS):
        w = _per_task(params[f"body.blocks.{i}.0.weight"], t, 4)
        bias = _per_task(params[f"body.blocks.{i}.0.bias"], t, 1)
        if i == 0 and not channels_last:  # the images need no gradient: GEMM-shaped backward (first_conv.py)
            h = first_conv3x3(h, w.reshape(-1, *w.shape[2:]), bias.reshape(-1), groups=t)
        else:
            h = F.conv2d(h, w.reshape(-1, *w.shape[2:]), bias.reshape(-1), padding=1, groups=t)
        gamma = _per_task(params[f"body.blocks.{i}.1.weight"], t, 1).reshape(-1)
        beta = _per_task(params[f"body.blocks.{i}.1.bias"], t, 1).reshape(-1)
        if batch_norm == "closed_form" or (batch_norm == "auto" and h.device.type == "cpu"):
            # models/batch_norm.py: same values and derivatives, a faster double backward on CPU
            h = batch_norm_train(h, gamma, beta, BN_EPS)
        else:
            h = F.batch_norm(h, None, None, gamma, beta, training=True, eps=BN_EPS)
        # = max_pool(relu(h)): relu is monotone; 4x fewer elements. max_pool2x2 is F.max_pool2d
        # (bit-identical, to second order) with a faster CPU forward (models/pooling.py).
        h = F.relu(F.max_pool2d(h, 2) if channels_last else max_pool2x2(h))
    # [B, T*C, h, w] -> [T, B, C*h*w], flattened in Conv4's (C, h, w) order
    return h.reshape(b, t, -1).transpose(0, 1)


def _conv3x3_im2col(h: Tensor, w: Tensor, bias: Tensor) -> Tensor:
    """``[T, B, H, W, Ci]`` * ``[T, Co, Ci, 3, 3]`` (padding 1) -> ``[T, B, H, W, Co]``."""
    t, b, hh, ww, ci = h.shape
    p = F.pad(h, (0, 0, 1, 1, 1, 1))
    cols = torch.cat([p[:, :, dy : dy + hh, dx : dx + ww] for dy in range(3) for dx in range(3)], -1)
    wm = w.permute(0, 3, 4, 2, 1).reshape(t, 9 * ci, w.shape[1])  # (dy, dx, ci) x co
    out = torch.baddbmm(bias.unsqueeze(1), cols.reshape(t, b * hh * ww, 9 * ci), wm)
    return out.view(t, b, hh, ww, -1)


def _im2col_body(params: dict[str, Tensor], x: Tensor) -> Tensor:
    t, b = x.shape[:2]
    h = x.permute(0, 1, 3, 4, 2)
    for i in range(_BLOCKS):
        w = _per_task(params[f"body.blocks.{i}.0.weight"], t, 4)
        bias = _per_task(params[f"body.blocks.{i}.0.bias"], t, 1)
        h = _conv3x3_im2col(h, w, bias)
        gamma = _per_task(params[f"body.blocks.{i}.1.weight"], t, 1)
        beta = _per_task(params[f"body.blocks.{i}.1.bias"], t, 1)
        flat = h.view(t, -1, h.shape[-1])
        var, mean = torch.var_mean(flat, dim=1, unbiased=False, keepdim=True)
        flat = (flat - mean) * (torch.rsqrt(var + BN_EPS) * gamma.unsqueeze(1)) + beta.unsqueeze(1)
        hh, ww, c = h.shape[2:]
        nchw = F.relu(flat).view(t * b, hh, ww, c).permute(0, 3, 1, 2)  # channels-last strides
        h = F.max_pool2d(nchw, 2).permute(0, 2, 3, 1).reshape(t, b, hh // 2, ww // 2, c)
    return h.permute(0, 1, 4, 2, 3).reshape(t, b, -1)


def _loop_body(params: dict[str, Tensor], x: Tensor) -> Tensor:
    t = x.shape[0]
    outs = []
    for k in range(t):
        h = x[k]
        for i in range(_BLOCKS):
            w = _per_task(params[f"body.blocks.{i}.0.weight"], t, 4)[k]
            bias = _per_task(params[f"body.blocks.{i}.0.bias"], t, 1)[k]
            h = F.conv2d(h, w, bias, padding=1)
            gamma = _per_task(params[f"body.blocks.{i}.1.weight"], t, 1)[k]
            beta = _per_task(params[f"body.blocks.{i}.1.bias"], t, 1)[k]
            h = F.max_pool2d(F.relu(F.batch_norm(h, None, None, gamma, beta, training=True, eps=BN_EPS)), 2)
        outs.append(h.flatten(1))
    return torch.stack(outs)


def batched_conv4_body(
    params: dict[str, Tensor],
    x: Tensor,
    backend: ConvBackend = "grouped",
    channels_last: bool = False,
    batch_norm: BatchNormKernel = "auto",
) -> Tensor:
    """Conv-4 embeddings of every task's inputs under that task's weights.

    Args:
        params: ``Conv4`` parameter names -> tensors, each ``[T, *shape]`` or ``shape``.
        x: ``[T, B, C, H, W]`` inputs.
        backend: ``"grouped"``, ``"im2col"`` or ``"loop"`` (module docstring).
        channels_last: run the grouped backend in channels-last memory format.
        batch_norm: the grouped backend's batch norm: ``"closed_form"``
            (``models/batch_norm.py``: a hand-derived double backward), ``"aten"``
            (``F.batch_norm``; cuDNN on CUDA) or ``"auto"``: closed form on CPU, where its
            double backward is faster (experiments/speed_vs_peers), ATen elsewhere; same
            values and derivatives.

    Returns:
        ``[T, B, D]`` features, in the same order as ``Conv4Backbone``'s flatten.
    """
    if backend == "grouped":
        if batch_norm not in get_args(BatchNormKernel):
            raise ValueError(
                f"batch_norm must be one of {', '.join(map(repr, get_args(BatchNormKernel)))} (got {batch_norm!r})."
            )
        return _grouped_body(params, x, channels_last, batch_norm)
    if backend == "im2col":
        return _im2col_body(params, x)
    if backend == "loop":
        return _loop_body(params, x)
    raise ValueError(f"conv backend must be 'grouped', 'im2col' or 'loop' (got {backend!r}).")


def batched_conv4(
    params: dict[str, Tensor],
    x: Tensor,
    backend: ConvBackend = "grouped",
    channels_last: bool = False,
    batch_norm: BatchNormKernel = "auto",
) -> Tensor:
    """Conv-4 logits ``[T, B, N]``: :func:`batched_conv4_body` then the per-task head."""
    return _head(params, batched_conv4_body(params, x, backend, channels_last, batch_norm))


def batched_head(params: dict[str, Tensor], feats: Tensor) -> Tensor:
    """The per-task linear head alone (ANIL's inner loop): ``[T, B, D] -> [T, B, N]``."""
    return _head(params, feats)
