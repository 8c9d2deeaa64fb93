"""The contract of a multi-task model: one forward gives every task's prediction.

``model(x)`` returns :class:`TaskOutputs`: ``predictions``, a list of K tensors (task k's
[B, out_dim_k] logits or [B, 1] regression output), and ``features``, the shared
representation every head reads (or None for a network with no single shared
representation, such as a task-conditioned one). The parameters split into
:meth:`MultiTaskModel.shared_parameters` (what the weighting methods act on) and
:meth:`MultiTaskModel.task_parameters` (each task's own). Choosing the split is choosing
what to share (CS330 lecture 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from torch import Tensor, nn

__all__ = ["MultiTaskModel", "TaskOutputs"]


class TaskOutputs(NamedTuple):
    predictions: list[Tensor]
    features: Tensor | None = None


class MultiTaskModel(nn.Module):
    """Base class: subclasses implement ``forward(x) -> TaskOutputs`` and
    :meth:`task_parameters`; every other parameter is shared."""

    num_tasks: int

    def task_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters that belong to one task (heads, task embeddings). Default: none."""
        return iter(())

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter that is not task-specific."""
        own = {id(p) for p in self.task_parameters()}
        return (p for p in self.parameters() if id(p) not in own)
