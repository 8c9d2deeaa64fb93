"""Multi-task architectures: hard sharing, task-conditioned networks, a hypernetwork head,
and soft sharing (MMoE, cross-stitch). Each maps x to every task's prediction (:mod:`.base`)."""

from .base import MultiTaskModel, TaskOutputs

__all__ = ["MultiTaskModel", "TaskOutputs"]
