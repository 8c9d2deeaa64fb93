"""Input checks shared by the batched task heads.

Every head takes a whole meta-batch: support features ``[T, S, D]``, support labels
``[T, S]`` (int64 in ``0..n_way-1``) and query features ``[T, Q, D]``. The checks here
turn the usual mistakes (a missing task dimension, labels that do not fit ``n_way``,
an empty support set, integer features) into errors that say how to fix them.
"""

from __future__ import annotations

import torch
from torch import Tensor


def check_features(name: str, x: Tensor, head: str) -> None:
    """Require a floating ``[T, N, D]`` tensor."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{head}: {name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.dim() != 3:
        raise ValueError(
            f"{head}: {name} must have shape [T, n, D] (tasks, examples, feature dim), got "
            f"{tuple(x.shape)}; for a single task add the task dimension with x.unsqueeze(0), "
            "and flatten image features to [.., D] first."
        )
    if not x.is_floating_point():
        raise TypeError(
            f"{head}: {name} must be floating point (float32 or float64), got {x.dtype}; "
            "call .float() on the features."
        )


def check_support(
    support: Tensor,
    labels: Tensor,
    n_way: int,
    head: str,
    query: Tensor | None = None,
) -> None:
    """Check a support set (and optionally a query set) for a classification head.

    Raises:
        ValueError / TypeError naming the offending tensor and the fix.
    """
    check_features("support", support, head)
    if query is not None:
        check_features("query", query, head)
    t, s, d = support.shape
    if s == 0:
        raise ValueError(
            f"{head}: the support set is empty (S=0); every task needs at least one labelled "
            "support example per class."
        )
    if not isinstance(n_way, int) or n_way < 1:
        raise ValueError(f"{head}: n_way must be a positive int, got {n_way!r}.")
    if not isinstance(labels, Tensor):
        raise TypeError(f"{head}: support_labels must be a torch.Tensor, got {type(labels).__name__}.")
    if labels.dtype != torch.int64:
        raise TypeError(
            f"{head}: support_labels must be int64 class indices in 0..n_way-1, got {labels.dtype}; "
            "call .long() (one-hot targets are not accepted, pass the indices)."
        )
    if labels.shape != (t, s):
        raise ValueError(
            f"{head}: support_labels has shape {tuple(labels.shape)} but support features have "
            f"shape {tuple(support.shape)}; labels must be [T, S] = [{t}, {s}]."
        )
    if query is not None:
        if query.shape[0] != t or query.shape[2] != d:
            raise ValueError(
                f"{head}: query has shape {tuple(query.shape)} but support has shape "
                f"{tuple(support.shape)}; query must be [T, Q, D] = [{t}, Q, {d}] with the same "
                "tasks and feature dimension."
            )
        if query.dtype != support.dtype or query.device != support.device:
            raise ValueError(
                f"{head}: query is {query.dtype} on {query.device} but support is {support.dtype} "
                f"on {support.device}; move both to one dtype and device."
            )
    if labels.device != support.device:
        raise ValueError(
            f"{head}: support_labels are on {labels.device} but features on {support.device}; "
            "move the labels with .to(support.device)."
        )
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= n_way:
        raise ValueError(
            f"{head}: support labels must lie in 0..n_way-1 = 0..{n_way - 1}, found values in "
            f"[{lo}, {hi}]; relabel each task's classes to 0..n_way-1 (local labels) or pass the "
            "right n_way."
        )


def check_all_classes_present(counts: Tensor, head: str) -> None:
    """``counts``: ``[T, n_way]`` support examples per class; each must be >= 1."""
    if bool((counts == 0).any()):
        t, k = (counts == 0).nonzero()[0].tolist()
        raise ValueError(
            f"{head}: task {t} has no support example of class {k}; every class 0..n_way-1 "
            "needs at least one support example (check the episode sampler or n_way)."
        )
