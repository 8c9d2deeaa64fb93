"""Negative-transfer diagnostics recorded during a training run (``metabridge multitask
--diagnostics-every N``): every N steps, the per-layer pairwise gradient cosines and
conflict rates of the shared parameters (:class:`~.diagnostics.GradientConflictTracker`)
and the lookahead inter-task affinity of TAG (:func:`~.diagnostics.lookahead_affinity`,
averaged over the recorded steps), from which a task grouping is searched
(:func:`~.diagnostics.group_tasks`).

The lookahead is a plain SGD step of size ``lookahead_lr`` on the shared parameters (by
default the run's learning rate, as TAG; with Adam the real step is not lr * g, so the
affinities measure the direction of each task's gradient at the training step size, not
Adam's update). A step much larger than the training rate overshoots: with 0.1 on the
Multi-Fashion-MNIST encoder every task's own loss rose (Z_{i->i} < 0). It is computed in
eval mode (no dropout noise, batch norm with running statistics), and leaves the model
untouched.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .diagnostics import AffinityAccumulator, GradientConflictTracker, group_tasks
from .models.base import MultiTaskModel
from .tasks import TaskSpec
from .trainer import task_losses

__all__ = ["TrainingDiagnostics"]


class TrainingDiagnostics:
    """Hooks for :func:`~.trainer.train_multitask`'s ``on_batch``; :meth:`summary` is JSON-able."""

    def __init__(
        self, model: MultiTaskModel, tasks: list[TaskSpec], every: int, steps: int, lookahead_lr: float = 1e-3
    ) -> None:
        if every < 1:
            raise ValueError(f"diagnostics every must be >= 1 step (got {every}).")
        self.model, self.tasks, self.every, self.lookahead_lr = model, tasks, every, lookahead_lr
        names = [t.name for t in tasks]
        self.conflict = GradientConflictTracker(model, every=every, task_names=names)
        self.affinity = AffinityAccumulator(len(tasks), task_names=names)

    def on_batch(self, step: int, x: Tensor, y: Tensor, losses: Tensor) -> None:
        if step % self.every:
            return
        self.conflict.record(step, losses)
        was_training = self.model.training
        self.model.eval()
        try:
            self.affinity.update(self.model, lambda out: task_losses(out, y, self.tasks), x, self.lookahead_lr)
        finally:
            self.model.train(was_training)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "gradient_conflict": self.conflict.history(),
            "lookahead_lr": self.lookahead_lr,
            "affinity": self.affinity.to_dict(),
        }
        k = len(self.tasks)
        if self.affinity.count and k >= 2:
            grouping = group_tasks(
                self.affinity.mean(), num_groups=min(2, k) if k <= 3 else 3, method="auto" if k <= 10 else "greedy"
            )
            named = grouping.named([t.name for t in self.tasks])
            out["grouping"] = {**grouping.to_dict(), "named": [list(g) for g in named]}
        return out
