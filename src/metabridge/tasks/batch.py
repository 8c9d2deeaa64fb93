"""A batch of tasks as stacked tensors.

A task T_i = {p_i(x), p_i(y|x), L_i} (CS330 lecture 2) is seen through a support set
D_i^tr (used to adapt) and a query set D_i^ts (used to score the adaptation).
Every algorithm in metabridge consumes tasks in this one stacked form, so a
meta-batch is a handful of tensors and never a Python list of tasks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

import torch
from torch import Tensor

from ..data.class_dataset import host_to_device


@dataclass
class TaskBatch:
    """``T`` tasks, each with ``S`` support and ``Q`` query examples.

    Attributes:
        support_x: ``[T, S, *x_shape]`` inputs (float, or uint8 images before ``to_float``).
        support_y: ``[T, S]`` int64 labels in ``0..N-1`` (classification) or
            ``[T, S, d_y]`` float targets (regression).
        query_x: ``[T, Q, *x_shape]``.
        query_y: like ``support_y`` with ``Q`` examples.
        class_ids: ``[T, N]`` global class index of each task's local label ``j``
            (classification; used by MTL's per-class head rows), or ``None``.
        task_ids: ``[T]`` global task index (finite task pools; used by MTL's
            per-task heads in regression), or ``None``.
        n_way: number of classes per task for classification, ``None`` for regression.
    """

    support_x: Tensor
    support_y: Tensor
    query_x: Tensor
    query_y: Tensor
    class_ids: Tensor | None = None
    task_ids: Tensor | None = None
    n_way: int | None = None

    def __post_init__(self) -> None:
        t = self.support_x.shape[0]
        for f in ("support_y", "query_x", "query_y"):
            if getattr(self, f).shape[0] != t:
                raise ValueError(
                    f"TaskBatch: {f} has {getattr(self, f).shape[0]} tasks but support_x has {t}; "
                    "stack the same tasks along dim 0 of every tensor."
                )
        if self.support_x.shape[1] != self.support_y.shape[1]:
            raise ValueError(
                f"TaskBatch: support_x has {self.support_x.shape[1]} examples per task but "
                f"support_y has {self.support_y.shape[1]}; inputs and targets must pair up."
            )
        if self.query_x.shape[1] != self.query_y.shape[1]:
            raise ValueError(
                f"TaskBatch: query_x has {self.query_x.shape[1]} examples per task but "
                f"query_y has {self.query_y.shape[1]}; inputs and targets must pair up."
            )
        if self.support_x.shape[2:] != self.query_x.shape[2:]:
            raise ValueError(
                f"TaskBatch: support inputs have shape {tuple(self.support_x.shape[2:])} but query "
                f"inputs {tuple(self.query_x.shape[2:])}; both sets must come from one input space."
            )

    @property
    def num_tasks(self) -> int:
        return int(self.support_x.shape[0])

    @property
    def is_classification(self) -> bool:
        return self.n_way is not None

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> TaskBatch:
        """Move every tensor to ``device``; floating inputs/targets also to ``dtype`` if given.

        Tensors already on ``device`` (a batch from a sampler whose dataset lives there,
        :meth:`~metabridge.tasks.episodes.EpisodeSampler.to`) are not copied. Host tensors
        bound for CUDA are pinned and copied asynchronously, so the host does not wait for
        the GPU's queued work (:func:`~metabridge.data.class_dataset.host_to_device`); any
        other move is a plain blocking ``Tensor.to``, so a batch brought back to the host is
        complete when this returns."""

        def move(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            t = host_to_device(t, device)
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            return t

        moved: dict[str, Any] = {f.name: move(getattr(self, f.name)) for f in fields(self) if f.name != "n_way"}
        return replace(self, **moved)

    def __getitem__(self, idx: slice | int | Tensor) -> TaskBatch:
        """Select tasks (keeps the task dimension for an int index)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)

        def sel(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[idx]

        selected: dict[str, Any] = {f.name: sel(getattr(self, f.name)) for f in fields(self) if f.name != "n_way"}
        return replace(self, **selected)


def batch_slices(num_items: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``batch_size`` covering ``range(num_items)``.

    Fixed evaluation episodes are drawn all at once and then cut with these slices, so
    the episodes a seed gives do not depend on the batch size they are evaluated in.
    """
    if num_items < 1 or batch_size < 1:
        raise ValueError(f"need num_episodes >= 1 and batch_size >= 1 (got {num_items}, {batch_size}).")
    for start in range(0, num_items, batch_size):
        yield slice(start, min(start + batch_size, num_items))
