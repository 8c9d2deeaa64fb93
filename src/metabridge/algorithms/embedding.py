"""Embedding a batch of tasks with a shared body: ``[T, S, *x] -> [T, S, D]``."""

from __future__ import annotations

from torch import Tensor, nn


def embed_tasks(body: nn.Module, x: Tensor) -> Tensor:
    """Run ``body`` on all ``T*S`` inputs at once and restore the task dimension.

    One large batch is the fast path; it is only appropriate for bodies whose batch norm
    uses running statistics at test time (``track_running_stats=True``), so that no
    statistic is shared between tasks during evaluation.
    """
    t, s = x.shape[:2]
    return body(x.flatten(0, 1)).unflatten(0, (t, s))
