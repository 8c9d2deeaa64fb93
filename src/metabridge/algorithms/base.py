"""The one contract every algorithm in metabridge follows.

Wang, Zhao & Li (ICML 2021, Sec. 3) write MTL and gradient-based meta-learning as
one problem: shared parameters theta, per-task parameters phi_i, and

    min_theta  sum_i  L_i(theta, phi_i(theta);  D_i)

where the methods differ only in how phi_i is obtained (a free head row for MTL, k
SGD steps for MAML, a closed-form solver for MetaOptNet, class means for ProtoNet).
So an algorithm here does two things:

* ``meta_loss(batch)``: a batch of training tasks -> the scalar whose gradient is the
  outer update (for Reptile, a surrogate whose gradient is theta - phi);
* ``adapt(batch)``: the support sets of a batch of tasks -> a predictor for their
  queries (``predict(batch)`` applies it to ``batch.query_x``).

Training, evaluation, benchmarks and the CLI only ever call these.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..tasks.batch import TaskBatch

#: A per-batch predictor: query inputs ``[T, Q, *x_shape]`` -> outputs ``[T, Q, out]``.
Predictor = Callable[[Tensor], Tensor]


def task_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy for int64 labels, mean squared error for float targets.

    ``pred`` is ``[..., n_way]`` logits or ``[..., d_y]`` regressions; the mean runs
    over every leading dimension (examples, and tasks when batched).
    """
    if target.dtype == torch.long:
        return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1))
    if pred.shape != target.shape:
        raise ValueError(f"regression prediction shape {tuple(pred.shape)} differs from target {tuple(target.shape)}.")
    return F.mse_loss(pred, target)


def per_task_score(pred: Tensor, target: Tensor) -> Tensor:
    """``[T]`` per-task accuracy (classification) or mean squared error (regression)."""
    if target.dtype == torch.long:
        return (pred.argmax(-1) == target).double().mean(dim=1)
    return ((pred - target) ** 2).double().flatten(1).mean(dim=1)


class MetaAlgorithm(nn.Module, ABC):
    """Base class: see the module docstring for the contract."""

    name: ClassVar[str] = "algorithm"

    @abstractmethod
    def meta_loss(self, batch: TaskBatch) -> Tensor:
        """Scalar training loss of a batch of tasks; its gradient is the outer update."""

    @abstractmethod
    def adapt(self, batch: TaskBatch) -> Predictor:
        """Adapt to each task's support set; return a predictor for that task's inputs."""

    def predict(self, batch: TaskBatch) -> Tensor:
        """Query predictions ``[T, Q, out]`` after adapting on the support sets."""
        return self.adapt(batch)(batch.query_x)
