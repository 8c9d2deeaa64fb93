"""Input checks shared by the batched task heads.

Every head takes a whole meta-batch: support features ``[T, S, D]``, support labels
``[T, S]`` (int64 in ``0..n_way-1``) and query features ``[T, Q, D]``. The checks here
turn the usual mistakes (a missing task dimension, labels that do not fit ``n_way``,
an empty support set, integer features) into errors that say how to fix them.

Host syncs. Shape, dtype and device checks read metadata only. Checks on tensor *values*
(label ranges, missing classes) read the tensor on the host: free for a CPU tensor, but
on an accelerator each read waits for all queued work, and the heads run inside every
training step. So value checks are exact, with the usual ``ValueError``, for host tensors
(:func:`reads_are_free`), and on CUDA become a device-side assertion queued with the
work (:func:`assert_on_device`, ``torch._assert_async``), which never makes the host wait
but, if it fails, aborts the CUDA context with its message at a later call. Other devices
(MPS, ``meta``) skip value checks. Batches from
:class:`~metabridge.tasks.episodes.EpisodeSampler` satisfy them by construction.
"""

from __future__ import annotations

import torch
from torch import Tensor


def reads_are_free(t: Tensor) -> bool:
    """Whether reading ``t``'s values on the host costs no device synchronisation (a host
    tensor); accelerator paths avoid such reads (module docstring)."""
    return t.device.type == "cpu"


def assert_on_device(cond: Tensor, message: str) -> None:
    """Assert the one-element bool ``cond`` without a host sync: ``torch._assert_async``
    on CUDA (fails at a later kernel launch, with ``message``); nothing elsewhere. For host
    tensors, check on the host instead (:func:`reads_are_free`)."""
    if cond.device.type == "cuda":
        torch._assert_async(cond, message)


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
            f"{head}: {name} must be floating point (float32 or float64), got {x.dtype}; call .float() on the features."
        )


def check_support(support: Tensor, labels: Tensor, n_way: int, head: str, query: Tensor | None = None) -> None:
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
            f"{head}: the support set is empty (S=0); every task needs at least one labelled support example per class."
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
    if not reads_are_free(labels):  # an accelerator: no host read (module docstring)
        assert_on_device(
            (labels.min() >= 0) & (labels.max() < n_way),
            f"{head}: support labels must lie in 0..n_way-1 = 0..{n_way - 1}",
        )
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= n_way:
        raise ValueError(
            f"{head}: support labels must lie in 0..n_way-1 = 0..{n_way - 1}, found values in "
            f"[{lo}, {hi}]; relabel each task's classes to 0..n_way-1 (local labels) or pass the "
            "right n_way."
        )


def check_all_classes_present(counts: Tensor, head: str) -> None:
    """``counts``: ``[T, n_way]`` support examples per class; each must be >= 1 (exact on the
    host, a device-side assertion on CUDA: module docstring)."""
    if not reads_are_free(counts):
        assert_on_device((counts > 0).all(), f"{head}: a task has no support example of some class 0..n_way-1")
        return
    if bool((counts == 0).any()):
        t, k = (counts == 0).nonzero()[0].tolist()
        raise ValueError(
            f"{head}: task {t} has no support example of class {k}; every class 0..n_way-1 "
            "needs at least one support example (check the episode sampler or n_way)."
        )
