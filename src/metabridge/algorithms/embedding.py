"""Embedding a batch of tasks with a shared body: ``[T, S, *x] -> [T, S, D]``."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm


def embed_tasks(body: nn.Module, x: Tensor) -> Tensor:
    """Run ``body`` on all ``T*S`` inputs at once and restore the task dimension.

    One large batch is the fast path; it is only appropriate for bodies whose batch norm
    uses running statistics at test time (``track_running_stats=True``), so that no
    statistic is shared between tasks during evaluation.
    """
    t, s = x.shape[:2]
    return body(x.flatten(0, 1)).unflatten(0, (t, s))


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
