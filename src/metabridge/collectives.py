"""Small timed collectives for the data-parallel meta-RL and multi-task trainers.

:class:`metabridge.distributed.GradientAverager` averages one module's gradients once per
step. The meta-RL and multi-task updates need more than that inside one step: TRPO
averages the policy gradient, every Fisher-vector product of conjugate gradient and the
surrogate and KL of every line-search candidate; the gradient-manipulation methods of
multi-task learning average the ``[K, P]`` per-task gradient matrix before they combine
it. :class:`RankMean` offers those reductions on any tensor, each one all-reduce, and
adds up the time they take (:attr:`RankMean.comm_seconds`, read and reset by
:meth:`RankMean.take_seconds`) so the trainers can report ``comm_s_per_step`` per rank.

Exactness: every rank holds a shard of equal size, so a quantity that is a mean over the
whole batch, ``m = (1 / N) sum_i x_i``, is the mean over ranks of the shard means,
``m = (1 / W) sum_r m_r`` with ``m_r = (W / N) sum_{i in shard r} x_i``; the mean over
ranks is one SUM all-reduce divided by ``W``. After it every rank holds the same bits
(gloo and NCCL reduce each element once and distribute the result), so decisions taken
from reduced values (conjugate gradient's stopping test, the line search's acceptance)
agree on every rank.

With one process (``context.enabled`` false) every method returns its input unchanged and
no time is counted, so a single-process run computes exactly what it computed before.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .distributed import DistributedContext, average_gradients, timed_all_reduce

__all__ = ["RankMean", "WithValue"]


class RankMean:
    """Means (and gathers) over the ranks of ``context``, with their wall time summed.

    Args:
        context: the ranks (a one-process context makes every call the identity).
    """

    def __init__(self, context: DistributedContext) -> None:
        self.context = context
        #: seconds spent in collectives since the last :meth:`take_seconds`
        self.comm_seconds = 0.0

    @property
    def enabled(self) -> bool:
        return self.context.enabled

    @property
    def world_size(self) -> int:
        return self.context.world_size

    def _timed_all_reduce(self, flat: Tensor) -> Tensor:
        self.comm_seconds += timed_all_reduce(flat)
        return flat

    def mean(self, tensor: Tensor) -> Tensor:
        """``(1 / W) sum_r tensor_r`` (detached, same shape and dtype); ``tensor`` itself in one process."""
        if not self.enabled:
            return tensor
        flat = tensor.detach().clone().contiguous()
        return self._timed_all_reduce(flat) / self.world_size

    def mean_many(self, tensors: Sequence[Tensor]) -> list[Tensor]:
        """:meth:`mean` of several tensors in one all-reduce (in the widest of their dtypes)."""
        if not self.enabled:
            return list(tensors)
        dtype = torch.float32
        for t in tensors:
            dtype = torch.promote_types(dtype, t.dtype)
        flat = torch.cat([t.detach().reshape(-1).to(dtype) for t in tensors])
        flat = self._timed_all_reduce(flat) / self.world_size
        out, offset = [], 0
        for t in tensors:
            n = t.numel()
            out.append(flat[offset : offset + n].view(t.shape).to(t.dtype))
            offset += n
        return out

    def gather_cat(self, tensor: Tensor, dim: int = 0) -> Tensor:
        """Every rank's ``tensor`` (all of one shape) concatenated along ``dim`` in rank order."""
        if not self.enabled:
            return tensor
        local = tensor.detach().contiguous()
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        t0 = time.perf_counter()
        dist.all_gather(parts, local)
        if local.device.type == "cuda":
            torch.cuda.synchronize(local.device)
        self.comm_seconds += time.perf_counter() - t0
        return torch.cat(parts, dim=dim)

    def average_grads(self, params: Sequence[Tensor], scalars: Sequence[Tensor | float] = ()) -> list[Tensor]:
        """Replace each ``p.grad`` by its mean over the ranks and return the means of ``scalars``
        (0-d), all in one all-reduce (:func:`metabridge.distributed.average_gradients`). One
        process: gradients untouched, ``scalars`` as 0-d tensors."""
        means, seconds = average_gradients(params, self.context, scalars)
        self.comm_seconds += seconds
        return means

    def average_buffers(self, module: nn.Module) -> None:
        """Mean over the ranks of ``module``'s floating-point buffers (e.g. batch-norm running
        statistics), so the replicas stay equal; nothing when there are none or one process."""
        buffers = [b for b in module.buffers() if b.is_floating_point()]
        if not self.enabled or not buffers:
            return
        with torch.no_grad():
            for b, m in zip(buffers, self.mean_many(buffers)):
                b.copy_(m)

    def take_seconds(self) -> float:
        """The collectives' seconds since the last call (and reset the count)."""
        seconds, self.comm_seconds = self.comm_seconds, 0.0
        return seconds


class WithValue(torch.autograd.Function):
    """``WithValue.apply(local, value)``: a tensor whose *value* is ``value`` and whose gradient
    flows to ``local`` unchanged (d out / d local = I).

    Used to hand a loss-weighting method the whole batch's losses ``value = (1 / W) sum_r L_r``
    while back-propagating through this rank's ``L_r``: for an objective f of the losses,
    this rank's backward then gives ``sum_k df/dL_k (value) grad L_{k,r}``, whose mean over the
    ranks is ``sum_k df/dL_k (value) grad L_k``, the single-process gradient (chain rule)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, local: Tensor, value: Tensor) -> Tensor:  # type: ignore[override]
        return value.detach().clone().to(local.dtype)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad, None
