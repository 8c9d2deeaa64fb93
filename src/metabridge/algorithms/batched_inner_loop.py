"""MAML's inner loop for a whole meta-batch at once (no loop over tasks).

The same update as :func:`~metabridge.algorithms.inner_loop.sgd_inner_loop`
(Finn et al. 2017, Eq. 1, k steps),

    phi_i^(s+1) = phi_i^(s) - alpha_s (.) grad_phi L(phi_i^(s); D_i^tr),

but every fast tensor carries a leading task dimension ``T`` and the forward is a
task-batched network (e.g. :func:`~metabridge.models.batched_conv4.batched_conv4`),
so one call runs all T tasks. Tasks do not interact, so the gradient of

    sum_i L_i(phi_i) = T * mean over every task's examples

with respect to the stacked ``phi`` is exactly the stack of per-task gradients; one
``torch.autograd.grad`` gives all of them (``create_graph`` for second order).

``checkpoint=True`` wraps each inner step in ``torch.utils.checkpoint`` (non-reentrant):
only the step's input weights are kept and its activations are recomputed during the
outer backward, so second-order memory no longer grows with the activations of every
step (at about one extra inner step of compute per step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from ..tasks.batch import TaskBatch
from .base import task_loss
from .inner_loop import Params, StepSize

BatchedForward = Callable[[Params, Tensor], Tensor]


def _one_step(forward: BatchedForward, names: list[str], x: Tensor, y: Tensor, alphas: dict[str, Tensor | float],
              first_order: bool, *tensors: Tensor) -> tuple[Tensor, ...]:
    """phi - alpha * grad L(phi) for all tasks; ``tensors`` are the fast weights in ``names`` order."""
    inputs = [t if t.requires_grad else t.detach().requires_grad_(True) for t in tensors]
    with torch.enable_grad():
        pred = forward(dict(zip(names, inputs)), x)
        loss = task_loss(pred, y) * x.shape[0]  # sum over tasks of each task's mean loss
        grads = torch.autograd.grad(loss, inputs, create_graph=not first_order)
    if first_order:
        grads = tuple(g.detach() for g in grads)
    return tuple(p - alphas[k] * g for k, p, g in zip(names, tensors, grads))


def batched_sgd_inner_loop(forward: BatchedForward, fast: Params, x: Tensor, y: Tensor, steps: int,
                           step_size: StepSize, first_order: bool, checkpoint: bool = False) -> Params:
    """``steps`` gradient steps of every task at once.

    Args:
        forward: ``(params, x [T, B, ...]) -> predictions [T, B, out]``, params with a
            leading task dimension (or shared, without it).
        fast: the adapted tensors, each ``[T, *shape]`` (phi_i^(0), e.g. theta expanded).
        x, y: support inputs ``[T, S, ...]`` and targets ``[T, S]`` (or ``[T, S, d_y]``).
        steps: k.
        step_size: ``s -> {name: alpha_s}``; scalars or tensors broadcastable to one task's tensor.
        first_order: drop the second-order terms (FOMAML).
        checkpoint: recompute each step's activations in the backward pass instead of
            keeping them (second order only; first order keeps no inner graph anyway).
    """
    names = list(fast)
    tensors = tuple(fast[k] for k in names)
    use_ckpt = checkpoint and not first_order and torch.is_grad_enabled()
    for s in range(steps):
        alphas = step_size(s)
        if use_ckpt:
            tensors = torch_checkpoint(_one_step, forward, names, x, y, alphas, first_order, *tensors,
                                       use_reentrant=False)
        else:
            tensors = _one_step(forward, names, x, y, alphas, first_order, *tensors)
    return dict(zip(names, tensors))


def expand_to_tasks(params: Params, names: list[str], num_tasks: int) -> Params:
    """theta -> phi^(0) for every task: a broadcast view ``[T, *shape]`` of each named tensor."""
    return {k: params[k].unsqueeze(0).expand(num_tasks, *params[k].shape) for k in names}


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    """A persistent pool per size: fresh threads every meta-iteration were measured slower
    (new malloc arenas fault their pages in again)."""
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="metabridge-task")
    return _POOLS[threads]


def chunked_meta_loss(loss_fn: Callable[[TaskBatch], Tensor], batch: TaskBatch, chunk: int,
                      params: list[Tensor], threads: int = 1) -> Tensor:
    """The meta-loss of ``batch`` computed ``chunk`` tasks at a time, each chunk's graph freed
    as soon as its gradient is taken, so memory is that of ``threads`` chunks, not of the
    whole meta-batch.

    The meta-loss is a mean over tasks, so its gradient is the task-weighted sum of the
    chunks' gradients. Returned is a scalar whose value is the meta-loss and whose
    gradient with respect to ``params`` is the accumulated one:

        total + (sum_p <p, g_p> - stop_grad(sum_p <p, g_p>))

    (the bracket is exactly zero in value). ``loss.backward()`` then fills ``p.grad`` as
    usual; differentiating it twice, or with respect to anything but ``params``, is not
    supported. With ``threads > 1`` that many chunks run at once in Python threads, each
    with single-threaded operators (``torch.set_num_threads(1)`` for the duration, then
    restored): on a 2-core CPU two one-task chunks side by side ran 1.3x faster than one
    task on two threads, because Conv-4's batch norm, ReLU and pooling are
    memory-bound and small per-task tensors stay in each core's cache. The chunks'
    gradients are summed in task order, so the result does not depend on scheduling.
    """
    t = batch.num_tasks

    def run(start: int, single: bool = False) -> tuple[Tensor, tuple[Tensor | None, ...]]:
        if single:  # OpenMP's thread count is per calling thread: set it in the worker itself
            torch.set_num_threads(1)
        sub = batch[start:start + chunk]
        loss = loss_fn(sub) * (sub.num_tasks / t)
        return loss.detach(), torch.autograd.grad(loss, params, allow_unused=True)

    starts = range(0, t, chunk)
    total = torch.zeros((), dtype=params[0].dtype, device=params[0].device)
    grads: list[Tensor | None] = [None] * len(params)

    def accumulate(results: Iterable[tuple[Tensor, tuple[Tensor | None, ...]]]) -> Tensor:
        acc = total
        for loss, chunk_grads in results:  # consumed as they come: one chunk's gradient alive at a time
            acc = acc + loss
            for i, g in enumerate(chunk_grads):
                if g is not None:
                    grads[i] = g if grads[i] is None else grads[i] + g
        return acc

    if threads > 1 and len(starts) > 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            total = accumulate(_pool(threads).map(run, starts, [True] * len(starts)))
        finally:
            torch.set_num_threads(previous)
    else:
        total = accumulate(run(s) for s in starts)
    link = sum((p * g).sum() for p, g in zip(params, grads) if g is not None)
    if not isinstance(link, Tensor):
        return total
    return total + (link - link.detach())
