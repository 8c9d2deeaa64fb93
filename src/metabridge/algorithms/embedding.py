"""Embedding a batch of tasks with a shared body: ``[T, S, *x] -> [T, S, D]``.

Mixed precision. An embedding method run under ``torch.autocast`` (bfloat16) computes its
body in the low precision and its head in full precision: the head's inputs go through
:func:`head_features` (float32) and the head runs inside :func:`autocast_off`. Prototype
distances cancel (||q||^2 - 2 q.c + ||c||^2), and the ridge, SVM and logistic solvers
factor Gram and Newton matrices whose conditioning bfloat16's 8-bit mantissa cannot carry.
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm


def uses_batch_statistics(body: nn.Module) -> bool:
    """Whether some batch-norm layer of ``body`` normalizes with the statistics of the batch
    at hand even in eval mode, i.e. has no running statistics (``track_running_stats=False``,
    e.g. a default :class:`~metabridge.models.Conv4Backbone`)."""
    return any(isinstance(m, _BatchNorm) and m.running_mean is None for m in body.modules())


def embed_tasks(body: nn.Module, x: Tensor) -> Tensor:
    """Embed ``T`` tasks ``[T, S, *x] -> [T, S, D]`` without letting batch statistics mix tasks.

    * Batch norm with running statistics (or none at all): one forward of all ``T*S``
      inputs (the fast path). In eval mode nothing is shared between tasks; in training
      mode batch norm normalizes over the meta-batch, the usual multi-task training
      convention, and accumulates the running statistics.
    * Batch norm without running statistics (:func:`uses_batch_statistics`): one forward
      per task, in training and in evaluation, so each task's batch is normalized with its
      own statistics (MAML's transductive convention). Otherwise a task's embedding, and
      the evaluation accuracy, would depend on which other tasks share its batch (the
      accuracy on the same episodes changes with the evaluation batch size). On CPU the
      loop is no slower than one large forward or ``torch.func.vmap`` over the tasks,
      in evaluation and in training (not measured in a stored experiment).
    """
    if uses_batch_statistics(body):
        return embed_each_task(body, x)
    t, s = x.shape[:2]
    return body(x.flatten(0, 1)).unflatten(0, (t, s))


def embed_each_task(body: nn.Module, x: Tensor) -> Tensor:
    """Embed ``T`` tasks ``[T, S, *x] -> [T, S, D]`` with one forward per task.

    In training mode each task's batch norm normalizes with that task's own statistics and
    the running statistics are updated once per task (momentum applied ``T`` times), as in
    Wang et al.'s MTL code, where each training step embeds one task (GitHub
    AI-secure/multi-task-learning at 81ea1f5, lightning_mtl.py:176, 189) and ``T`` tasks
    are accumulated into one optimizer step (train.py:201). In eval mode with running
    statistics it gives what :func:`embed_tasks` gives (up to floating-point rounding).
    """
    return torch.stack([body(xt) for xt in x])


def embed_tasks_with_task_statistics(body: nn.Module, x: Tensor) -> Tensor:
    """Like :func:`embed_tasks`, but batch norm normalizes with each task's own batch.

    MAML's transductive convention (Finn et al. 2017, their code): at test time a task's
    support (or query) images are normalized with the mean and variance of that batch,
    not with running statistics gathered on the training classes. Only the batch-norm
    layers switch to training behaviour (DropBlock / dropout stay in eval mode), and the
    running statistics are left untouched: the forwards update one throw-away copy, which
    no forward reads (training-mode batch norm normalizes with the batch's statistics).
    One forward per task (the statistics differ per task).
    """
    norms = [m for m in body.modules() if isinstance(m, _BatchNorm)]
    modes = [m.training for m in norms]
    state = {**dict(body.named_parameters()), **{k: v.clone() for k, v in body.named_buffers()}}
    try:
        for m in norms:
            m.train()
        feats = [functional_call(body, state, (xt,)) for xt in x]
    finally:
        for m, mode in zip(norms, modes):
            m.train(mode)
    return torch.stack(feats)


def autocast_off(x: Tensor) -> contextlib.AbstractContextManager:
    """A context with autocast disabled for ``x``'s device type when it is on there (the head
    then runs in its inputs' dtype: float32 features, float64 solvers); otherwise a no-op."""
    kind = x.device.type
    try:
        on = torch.is_autocast_enabled(kind)
    except (RuntimeError, TypeError, ValueError):  # a device type autocast does not know (meta)
        return contextlib.nullcontext()
    return torch.autocast(kind, enabled=False) if on else contextlib.nullcontext()


def head_features(f: Tensor) -> Tensor:
    """Features as a head takes them: float32 when the body ran in a low precision under
    autocast (bfloat16 / float16), unchanged otherwise (float32, or float64 by choice).
    The cast is differentiable: gradients reach the body in its own dtype."""
    return f.float() if f.dtype in (torch.bfloat16, torch.float16) else f
