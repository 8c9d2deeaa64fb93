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

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import contextmanager

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as torch_checkpoint

from ..tasks.batch import TaskBatch
from .base import task_loss
from .inner_loop import LossFn, Params, StepSize

#: ``(params, x [T, B, ...]) -> predictions [T, B, out]``, params per task or shared.
BatchedForward = Callable[[Params, Tensor], Tensor]


def summed_task_loss(pred: Tensor, y: Tensor, loss_fn: LossFn | None = None) -> Tensor:
    """sum_i L(pred_i, y_i) over the leading task dimension of ``[T, B, ...]`` tensors.

    With ``loss_fn=None`` (:func:`task_loss`, a mean over every example) this is one call,
    ``T * task_loss(pred, y)``: all tasks have ``B`` examples, so the mean over all
    examples times T is the sum of the per-task means. A custom per-task loss is applied
    task by task (it need not be a mean over examples).
    """
    if loss_fn is None:
        return task_loss(pred, y) * pred.shape[0]
    return torch.stack([loss_fn(p, t) for p, t in zip(pred, y)]).sum()


def _one_step(
    forward: BatchedForward,
    names: list[str],
    x: Tensor,
    y: Tensor,
    alphas: dict[str, Tensor | float],
    first_order: bool,
    loss_fn: LossFn | None,
    *tensors: Tensor,
) -> tuple[Tensor, ...]:
    """phi - alpha * grad L(phi) for all tasks; ``tensors`` are the fast weights in ``names`` order."""
    inputs = [t if t.requires_grad else t.detach().requires_grad_(True) for t in tensors]
    with torch.enable_grad():
        pred = forward(dict(zip(names, inputs)), x)
        loss = summed_task_loss(pred, y, loss_fn)  # tasks are independent: grad of the sum = per-task grads
        grads = torch.autograd.grad(loss, inputs, create_graph=not first_order)
    if first_order:
        grads = tuple(g.detach() for g in grads)
    return tuple(p - alphas[k] * g for k, p, g in zip(names, tensors, grads))


def batched_sgd_inner_loop(
    forward: BatchedForward,
    fast: Params,
    x: Tensor,
    y: Tensor,
    steps: int,
    step_size: StepSize,
    first_order: bool,
    checkpoint: bool = False,
    loss_fn: LossFn | None = None,
) -> Params:
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
        loss_fn: the per-task inner loss ``(pred [S, out], y [S, ...]) -> scalar``;
            ``None`` is :func:`task_loss` (see :func:`summed_task_loss`).
    """
    names = list(fast)
    tensors = tuple(fast[k] for k in names)
    use_ckpt = checkpoint and not first_order and torch.is_grad_enabled()
    for s in range(steps):
        alphas = step_size(s)
        if use_ckpt:
            tensors = torch_checkpoint(
                _one_step, forward, names, x, y, alphas, first_order, loss_fn, *tensors, use_reentrant=False
            )
        else:
            tensors = _one_step(forward, names, x, y, alphas, first_order, loss_fn, *tensors)
    return dict(zip(names, tensors))


def expand_to_tasks(params: Params, names: list[str], num_tasks: int) -> Params:
    """theta -> phi^(0) for every task: a broadcast view ``[T, *shape]`` of each named tensor."""
    return {k: params[k].unsqueeze(0).expand(num_tasks, *params[k].shape) for k in names}


class WorkerPool:
    """Worker threads for :func:`chunked_meta_loss`, owned by one algorithm.

    Started on first use and reused across calls: a fresh pool per meta-iteration is
    slower, as new threads get new malloc arenas and fault their pages in again (not
    measured in a stored experiment).
    :meth:`close` shuts the threads down (the pool restarts if used again), and so does
    garbage collection of the pool. Copies and pickles start without threads.
    """

    def __init__(self, prefix: str = "metabridge-task") -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._finalizer: weakref.finalize | None = None

    def get(self, threads: int) -> Executor:
        """The pool with ``threads`` workers (a pool of another size is shut down first)."""
        with self._lock:
            if self._pool is None or self._pool._max_workers != threads:
                self._shutdown()
                self._pool = ThreadPoolExecutor(threads, thread_name_prefix=self.prefix)
                self._finalizer = weakref.finalize(self, self._pool.shutdown, wait=False)
            return self._pool

    def close(self) -> None:
        """Shut the worker threads down and wait for them to exit."""
        with self._lock:
            self._shutdown()

    def _shutdown(self) -> None:
        if self._pool is not None:
            assert self._finalizer is not None
            self._finalizer.detach()
            self._pool.shutdown(wait=True)
            self._pool = self._finalizer = None

    def __deepcopy__(self, memo: dict[int, object]) -> WorkerPool:
        return WorkerPool(self.prefix)

    def __reduce__(self) -> tuple[type[WorkerPool], tuple[str]]:
        return WorkerPool, (self.prefix,)


@contextmanager
def single_threaded_operators() -> Iterator[None]:
    """Run torch operators single-threaded in the calling thread, then restore its setting.

    ``torch.set_num_threads`` acts on the calling thread under ATen's OpenMP backend (the
    standard Linux / Windows builds: OpenMP's thread count is a per-thread setting;
    checked: a worker thread's ``set_num_threads(1)`` leaves the main thread's
    ``torch.get_num_threads()`` and ``mkl_get_max_threads()`` unchanged). Under the native
    thread-pool backend it is process-wide; the setting is restored on exit in both cases.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def chunked_meta_loss(
    loss_fn: Callable[[TaskBatch], Tensor],
    batch: TaskBatch,
    chunk: int,
    params: list[Tensor],
    threads: int = 1,
    executor: Executor | None = None,
) -> Tensor:
    """The meta-loss of ``batch`` computed ``chunk`` tasks at a time, each chunk's graph freed
    as soon as its gradient is taken, so memory is that of ``threads`` chunks, not of the
    whole meta-batch.

    The meta-loss is a mean over tasks, so its gradient is the task-weighted sum of the
    chunks' gradients. Returned is a scalar whose value is the meta-loss and whose
    gradient with respect to ``params`` is the accumulated one:

        total + (sum_p <p, g_p> - stop_grad(sum_p <p, g_p>))

    (the bracket is exactly zero in value). ``loss.backward()`` then fills ``p.grad`` as
    usual; differentiating it twice, or with respect to anything but ``params``, is not
    supported. With ``threads > 1`` that many chunks run at once in worker threads, each
    with single-threaded operators (:func:`single_threaded_operators`, inside the worker:
    the caller's thread settings are not touched): on CPU, chunks side by side on one thread
    each are faster than one chunk at a time on all threads, because Conv-4's batch norm,
    ReLU and pooling are memory-bound and small per-task tensors stay in each core's cache
    (experiments/speed_vs_peers: the default against ``metabridge:t1``). The chunks'
    gradients are summed in task order, so the result does not depend on scheduling.

    Args:
        loss_fn: ``TaskBatch -> scalar`` mean meta-loss of a sub-batch of tasks.
        batch: the meta-batch.
        chunk: tasks per chunk.
        params: the tensors the returned loss differentiates to.
        threads: chunks run at once.
        executor: where the chunks run when ``threads > 1`` (e.g. a :class:`WorkerPool`'s,
            as the MAML family passes); ``None`` starts a pool of ``threads`` workers for
            this call and shuts it down before returning, so no thread outlives the call.
    """
    t = batch.num_tasks

    def run(start: int) -> tuple[Tensor, tuple[Tensor | None, ...]]:
        sub = batch[start : start + chunk]
        loss = loss_fn(sub) * (sub.num_tasks / t)
        return loss.detach(), torch.autograd.grad(loss, params, allow_unused=True)

    def run_single_threaded(start: int) -> tuple[Tensor, tuple[Tensor | None, ...]]:
        with single_threaded_operators():
            return run(start)

    starts = range(0, t, chunk)
    total = torch.zeros((), dtype=params[0].dtype, device=params[0].device)
    grads: list[Tensor | None] = [None] * len(params)

    def accumulate(results: Iterable[tuple[Tensor, tuple[Tensor | None, ...]]]) -> Tensor:
        acc = total
        for loss, chunk_grads in results:  # consumed as they come: one chunk's gradient alive at a time
            acc = acc + loss
            for i, g in enumerate(chunk_grads):
                if g is not None:
                    previous = grads[i]
                    grads[i] = g if previous is None else previous + g
        return acc

    if threads > 1 and len(starts) > 1:
        if executor is not None:
            total = accumulate(executor.map(run_single_threaded, starts))
        else:
            with ThreadPoolExecutor(min(threads, len(starts)), thread_name_prefix="metabridge-task") as pool:
                total = accumulate(pool.map(run_single_threaded, starts))
    else:
        total = accumulate(run(s) for s in starts)
    link = sum((p * g).sum() for p, g in zip(params, grads) if g is not None)
    if not isinstance(link, Tensor):
        return total
    return total + (link - link.detach())
